# Runtime shared by every perception config (mmseg 1.x default_runtime + perception's imports).
default_scope = 'mmseg'
# the subpackages whose classes the configs name; importing them registers them
custom_imports = dict(imports=['perception.models', 'perception.datasets', 'perception.engine'],
                      allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),  # tools/train.py switches to gloo on machines without CUDA
)
vis_backends = [dict(type='LocalVisBackend')]
# no fixed name: each Runner gets its own visualizer (a fixed name makes later runs in one process
# write into the first run's folder)
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
custom_hooks = [dict(type='LearningCurveHook')]
tta_model = dict(type='SegTTAModel')
