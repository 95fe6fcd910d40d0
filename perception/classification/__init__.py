"""ImageNet linear probing: probes, format D, variant metrics, head EMA, fast cached-feature sweep."""


def register():
    from . import datasets, hooks, metrics, probes
    probes.register()
    metrics.register()
    hooks.register()
    datasets.register()
