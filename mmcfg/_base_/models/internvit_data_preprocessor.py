# The segmentors' data preprocessor: ImageNet mean/std on RGB, images padded with 0, label maps with 255 (ignored).
# The model bases (encoder_decoder_internvit.py, internvit_adapter.py) set the training pad size.
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
