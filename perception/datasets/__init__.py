"""Datasets and transforms (registered in mmseg's registries by ``perception.segmentation``)."""
