"""Views of sd-eval's records: a markdown table and a PSNR-against-MACs plot."""
from sd_plugin.errors import ConfigError
from sd_plugin.files import atomic_write
from sd_plugin.text import markdown_table as table


def markdown_table(records):
    """A markdown table of the records: one row per model output, one PSNR / SSIM column per data set."""
    datasets = list(dict.fromkeys(r['dataset'] for r in records if r['dataset'] is not None))
    rows = {}
    for r in records:
        rows.setdefault((r['model'], r['exit']), []).append(r)
    teacher_depth = {}
    for (model, exit), rs in rows.items():
        if exit is not None:
            teacher_depth[model] = max(teacher_depth.get(model, 0), exit)
    any_latency = any(r['latency_ms'] is not None for r in records)
    lr_size = records[0]['lr_size'] if records else ''
    head = ['model', 'exit', 'blocks', 'params', f'GMACs @{lr_size}']
    if any_latency:
        threads = next(r['threads'] for r in records if r['latency_ms'] is not None)
        head.append(f'CPU ms ({threads} threads)')
    head += [f'{d} x{records[0]["scale"]} PSNR / SSIM' for d in datasets]
    lines = []
    for (model, exit), rs in rows.items():
        r = rs[0]
        if exit is None:
            exit_text = '-'
        else:
            exit_text = f'{exit} (teacher)' if exit == teacher_depth[model] else str(exit)
        cells = [model, exit_text, '-' if r['depth'] is None else str(r['depth']),
                 f'{r["params"] / 1e6:.3f} M' if r['params'] else '0',
                 '-' if r['macs'] is None else f'{r["macs"] / 1e9:.2f}']
        if any_latency:
            cells.append('-' if r['latency_ms'] is None else f'{r["latency_ms"]:.1f}')
        by_set = {x['dataset']: x for x in rs}
        for d in datasets:
            x = by_set.get(d)
            cells.append(f'{x["psnr"]:.2f} / {x["ssim"]:.4f}' if x and x['psnr'] is not None else '-')
        lines.append(cells)
    return '\n'.join(table(head, lines))


def plot(records, path):
    """PNG of PSNR against GMACs, one panel per data set: each multi-exit model's exits and teacher joined by a
    line, single-exit models as points, bicubic as a dashed horizontal line."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib import pyplot as plt
    except ImportError:
        raise ConfigError('--plot needs matplotlib: pip install matplotlib') from None
    datasets = list(dict.fromkeys(r['dataset'] for r in records if r['dataset'] is not None))
    if not datasets:
        raise ConfigError('--plot needs PSNR values: give --sets')
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rs = [r for r in records if r['dataset'] == dataset]
        models = list(dict.fromkeys(r['model'] for r in rs if r['model'] != 'bicubic'))
        for model in models:
            mine = sorted((r for r in rs if r['model'] == model), key=lambda r: r['macs'])
            xs, ys = [r['macs'] / 1e9 for r in mine], [r['psnr'] for r in mine]
            if mine[0]['exit'] is None:
                ax.plot(xs, ys, 's', label=model)
            else:
                line, = ax.plot(xs, ys, 'o-', label=f'{model} (exits, teacher)')
                teacher = max(r['exit'] for r in mine)
                for r, x, y in zip(mine, xs, ys):
                    text = f'teacher ({r["exit"]})' if r['exit'] == teacher else f'exit {r["exit"]}'
                    ax.annotate(text, (x, y), textcoords='offset points', xytext=(4, -10), fontsize=8,
                                color=line.get_color())
        for r in rs:
            if r['model'] == 'bicubic':
                ax.axhline(r['psnr'], color='grey', linestyle='--', label=f'bicubic ({r["psnr"]:.2f} dB)')
        ax.set_xlabel(f'GMACs per {rs[0]["lr_size"]} LR image')
        ax.set_ylabel('PSNR (dB)')
        ax.set_title(f'{dataset} x{rs[0]["scale"]}')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, dpi=110, format='png'))
    finally:
        plt.close(fig)
