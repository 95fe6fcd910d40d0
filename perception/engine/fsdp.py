"""FSDP through mmengine's FlexibleRunner, on CUDA or on CPU (gloo), with InternViT blocks as units.

Registered in mmengine's registries:

* ``PortableFSDPStrategy`` (STRATEGIES): mmengine's ``FSDPStrategy`` with three thin changes.
  1. Device: mmengine passes ``device_id=int(LOCAL_RANK)`` (a CUDA index) and starts the process
     group through ``init_dist`` (which calls ``torch.cuda.set_device``). Without CUDA this strategy
     passes ``device_id=torch.device('cpu')`` and starts gloo itself; on CUDA it changes nothing.
  2. Parameter groups: with ``use_orig_params=True`` the optimizer sees each rank's flat 1-D shard of
     every parameter, so shape rules ("no weight decay for 1-D parameters") would treat every weight
     matrix as 1-D. The optimizer wrapper is built on the unwrapped model and handed to mmengine's
     own path for a pre-built wrapper, which re-targets each group onto the sharded parameters by
     name: every parameter gets exactly the lr and weight decay it gets without FSDP.
  3. Gradient clipping by norm: ``torch.nn.utils.clip_grad_norm_`` on a shard sees only that
     shard's norm; under FSDP the norm is FSDP's own ``clip_grad_norm_`` over the whole model.
* ``internvit_block_wrap_policy`` / ``internvit_block_checkpoint_fn`` (FUNCTIONS): every InternViT
  transformer block is an FSDP unit and an activation-checkpointing unit.
"""
import copy

import torch
from mmengine._strategy import FSDPStrategy
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper
from torch import nn
from ..registry import register


def _block_cls():
    from ..layers.block import Block
    return Block


@register('FUNCTIONS', 'mmengine')
def internvit_block_wrap_policy(module: nn.Module, recurse: bool, nonwrapped_numel: int,
                                min_num_params: int = 0) -> bool:
    """FSDP auto-wrap policy: every InternViT transformer block is its own FSDP unit (the rest of the
    model, embeddings, pyramid and heads, goes to the root unit)."""
    if recurse:
        return True
    return isinstance(module, _block_cls()) and nonwrapped_numel >= min_num_params


@register('FUNCTIONS', 'mmengine')
def internvit_block_checkpoint_fn(module: nn.Module) -> bool:
    """Activation checkpointing per InternViT block (matches the wrap unit)."""
    return isinstance(module, _block_cls())


@register('STRATEGIES', 'mmengine')
class PortableFSDPStrategy(FSDPStrategy):
    """mmengine's ``FSDPStrategy`` that also runs without CUDA (see the module docstring)."""

    def _setup_distributed(self, launcher: str = 'pytorch', backend: str = 'nccl', **kwargs):
        import torch.distributed as dist
        if torch.cuda.is_available():
            return super()._setup_distributed(launcher, backend, **kwargs)
        if not dist.is_initialized():
            if launcher != 'pytorch':
                raise RuntimeError(f'PortableFSDPStrategy on CPU starts gloo from torchrun\'s environment; '
                                   f'launcher {launcher!r} is not supported there (use tools/dist_train.sh)')
            dist.init_process_group(backend='gloo')

    def save_checkpoint(self, filename: str, *, extra_ckpt=None, **kwargs) -> None:
        """mmengine's, plus ``meta.fsdp`` (world size, state-dict type): what consolidation needs to
        know which rank files make up the checkpoint."""
        from mmengine.dist import get_world_size
        extra_ckpt = dict(extra_ckpt or {})
        extra_ckpt['meta'] = dict(extra_ckpt.get('meta') or {},
                                  fsdp=dict(world_size=get_world_size(), state_dict_type=self.state_dict_type.name))
        return super().save_checkpoint(filename, extra_ckpt=extra_ckpt, **kwargs)

    def load_checkpoint(self, filename: str, **kwargs) -> dict:
        """mmengine's, with the distributed-tensor classes of sharded checkpoints allowed for this load
        (weights-only unpickling stays on)."""
        from ..checkpoint.safe_load import allow_mmengine_globals, sharded_tensor_globals
        allow_mmengine_globals()
        with torch.serialization.safe_globals(sharded_tensor_globals()):
            return super().load_checkpoint(filename, **kwargs)

    def load_optim_state_dict(self, state_dict: dict) -> None:
        """mmengine 0.10.7 calls ``FSDP.optim_state_dict_to_load`` with torch 1.x's argument order,
        which torch 2.x reads as (model, optim, state): resume fails. Same call, by keyword."""
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        osd = FSDP.optim_state_dict_to_load(model=self.model, optim=self.optim_wrapper.optimizer,
                                            optim_state_dict=state_dict)
        self.optim_wrapper.load_state_dict(osd)

    def prepare(self, model, *, optim_wrapper=None, param_scheduler=None, compile=False, dispatch_kwargs=None):
        self._optim_cfg = optim_wrapper
        return super().prepare(model, optim_wrapper=optim_wrapper, param_scheduler=param_scheduler,
                               compile=compile, dispatch_kwargs=dispatch_kwargs)

    def _wrap_model(self, model: nn.Module) -> nn.Module:
        from mmengine.model import is_model_wrapper
        from mmengine.optim import build_optim_wrapper

        from .layer_decay import clean_param_name
        self._prebuilt_optim = None
        cfg = getattr(self, '_optim_cfg', None)
        if isinstance(cfg, dict) and not is_model_wrapper(model):
            # built while the parameters still have their real shapes (module docstring, point 2)
            cfg = copy.deepcopy(cfg)
            if cfg.get('type') in ('AmpOptimWrapper', AmpOptimWrapper):
                cfg.setdefault('use_fsdp', True)  # as mmengine's FSDPStrategy: ShardedGradScaler
            self._prebuilt_optim = build_optim_wrapper(model, cfg)
            self._param_names = {id(p): clean_param_name(n) for n, p in model.named_parameters()}
        if not torch.cuda.is_available():
            self.model_wrapper = dict(self.model_wrapper or dict(type='MMFullyShardedDataParallel'))
            self.model_wrapper.setdefault('device_id', torch.device('cpu'))
        return super()._wrap_model(model)

    def build_optim_wrapper(self, optim_wrapper, model=None):
        model = model if model is not None else self.model
        prebuilt = getattr(self, '_prebuilt_optim', None)
        if prebuilt is not None and isinstance(optim_wrapper, dict):
            self._prebuilt_optim = None
            optim_wrapper = self._retarget(prebuilt, model)
        else:
            optim_wrapper = super().build_optim_wrapper(optim_wrapper, model)
        if getattr(optim_wrapper, 'clip_func', None) is torch.nn.utils.clip_grad_norm_:
            def clip_whole_model(params, max_norm, norm_type=2.0, **kw):
                if kw:
                    raise ValueError(f'FSDP gradient clipping takes max_norm and norm_type only, got {sorted(kw)}')
                return model.clip_grad_norm_(max_norm, norm_type)
            optim_wrapper.clip_func = clip_whole_model
            print_log('FSDP: gradients clipped by the norm of the whole (sharded) model', logger='current')
        return optim_wrapper

    def _retarget(self, optim_wrapper, model):
        """Point every parameter group of an optimizer built on the unwrapped model at the FSDP
        model's (sharded) parameters of the same name; the groups' lr / weight decay stay as built."""
        from .layer_decay import clean_param_name
        sharded = {clean_param_name(n): p for n, p in model.named_parameters()}
        optimizer = optim_wrapper.optimizer
        assert not optimizer.state, 'the optimizer must not have stepped before FSDP wrapping'
        for group in optimizer.param_groups:
            params = []
            for p in group['params']:
                name = self._param_names[id(p)]
                if name not in sharded:
                    raise RuntimeError(f'PortableFSDPStrategy: parameter {name} is not among the FSDP model\'s '
                                       'parameters; set strategy.model_wrapper.use_orig_params=True')
                params.append(sharded[name])
            group['params'] = params
        return optim_wrapper
