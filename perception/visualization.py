"""Learning curves from mmengine's scalar logs, written as PNG."""
import glob
import json
import os
import os.path as osp
from typing import Dict, List, Optional


def find_scalars(work_or_log_dir: str) -> Optional[str]:
    """The newest ``vis_data/scalars.json`` under a work dir or a run's log dir."""
    cands = glob.glob(osp.join(work_or_log_dir, 'vis_data', 'scalars.json')) + \
        glob.glob(osp.join(work_or_log_dir, '*', 'vis_data', 'scalars.json'))
    return max(cands, key=os.path.getmtime) if cands else None


def read_scalars(path: str) -> Dict[str, List]:
    train, val = {'step': [], 'loss': [], 'lr': []}, {'step': [], 'mIoU': [], 'aAcc': [], 'mAcc': []}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                raise ValueError(f'{path}: line {lineno} is not JSON ({e}); expected mmengine\'s '
                                 'vis_data/scalars.json') from None
            if 'loss' in rec:
                train['step'].append(rec.get('step', rec.get('iter')))
                train['loss'].append(rec['loss'])
                train['lr'].append(rec.get('lr', float('nan')))
            elif 'mIoU' in rec or 'accuracy/top1' in rec:
                val['step'].append(rec.get('step'))
                val['mIoU'].append(rec.get('mIoU', rec.get('accuracy/top1')))
                val['aAcc'].append(rec.get('aAcc', float('nan')))
                val['mAcc'].append(rec.get('mAcc', float('nan')))
    return {'train': train, 'val': val}


def plot_learning_curve(scalars_json: str, out_png: str, title: Optional[str] = None) -> str:
    """Loss (left) and validation mIoU (right) against iterations."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    data = read_scalars(scalars_json)
    tr, va = data['train'], data['val']
    if not tr['step']:
        raise ValueError(f'no training losses in {scalars_json}')
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].plot(tr['step'], tr['loss'], lw=1, color='tab:blue')
    ax[0].set_xlabel('iteration')
    ax[0].set_ylabel('loss')
    ax[0].set_title('training loss')
    ax[0].grid(alpha=.3)
    if va['step']:
        ax[1].plot(va['step'], va['mIoU'], 'o-', color='tab:green', label='mIoU')
        if any(v == v for v in va['mAcc']):
            ax[1].plot(va['step'], va['mAcc'], 's--', color='tab:orange', label='mAcc', alpha=.7)
        ax[1].legend()
    ax[1].set_xlabel('iteration')
    ax[1].set_ylabel('%')
    ax[1].set_title('validation')
    ax[1].grid(alpha=.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    from .common.files import atomic_write
    with atomic_write(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format='png')
    plt.close(fig)
    return out_png
