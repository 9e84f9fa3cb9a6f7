"""Views of ``sd-eval --budget``'s records (``sd_plugin.evaluation.budget``): a markdown table and a PSNR-against-MACs
plot (fixed outputs as points, each router as a curve over the budgets)."""
from sd_plugin.errors import ConfigError
from sd_plugin.evaluation.budget import summary
from sd_plugin.files import atomic_write
from sd_plugin.routing.routers import DEFAULT_ROUTER
from sd_plugin.text import markdown_table


def budget_markdown(records):
    """Per set: the fixed outputs, then every router and budget (MAC share of the tiles' outputs, MACs actually
    run, PSNR / SSIM, the fixed outputs' PSNR at those MACs and the difference (images ahead / tied / behind), the
    images where one output ran everywhere, ms per image and its ratio to the teacher's, the share of the
    cheapest-to-teacher PSNR gap recovered)."""
    rows_of = {(r['dataset'], r['router'], r['budget']): r for r in summary(records)}
    lines = []
    for dataset in dict.fromkeys(r['dataset'] for r in records):
        rows = []
        for r in records:
            if r['dataset'] != dataset:
                continue
            if r['kind'] in ('exit', 'bicubic'):
                name = 'bicubic' if r['kind'] == 'bicubic' else f'exit {r["exit"]}'
                rows.append([name, '-', f'{r["share"]:.3g}', f'{r["share"]:.3g}', f'{r["psnr"]:.2f} / {r["ssim"]:.4f}',
                             '-', '-', '-', f'{r["ms"]:.0f}', '-', '-'])
                continue
            row = rows_of.get((dataset, r['router'], r['budget']))
            if row is None:  # budget 1: the teacher everywhere
                versus = ['-', '-', '-']
            else:
                images = row['images_vs_fixed']
                versus = [f'{row["fixed_at_equal_macs"]:.3f}', f'{row["vs_fixed"]:+.3f}' + (
                    '' if images is None else f' ({images["ahead"]} / {images["tied"]} / {images["behind"]})'),
                          '-' if row['fixed_images'] is None else str(row['fixed_images'])]
            gap = None if row is None else row['gap_recovered']
            rows.append([r['router'], f'{r["budget"]:g}', f'{r["share"]:.3f}', f'{r["executed_share"]:.3f}',
                         f'{r["psnr"]:.3f} / {r["ssim"]:.4f}', *versus, f'{r["ms"]:.0f}',
                         f'{r["ms"] / r["teacher_ms"]:.2f}', '-' if gap is None else f'{gap:.0%}'])
        lines += [f'**{dataset}**', '', *markdown_table(
            ['output / router', 'budget', 'MAC share', 'MACs run', 'PSNR / SSIM', 'fixed at equal MACs',
             'vs fixed (images + / = / -)', 'one output ran (images)', 'ms / image', 'x teacher ms',
             'gap recovered'], rows), '']
    return '\n'.join(lines)


def vs_fixed(records, default_router):
    """``{"default_router", "sets": {set: [{"router", "budget", "macs_run", "psnr", "fixed_at_equal_macs",
    "vs_fixed", "images_vs_fixed", "fixed_images"}]}}`` for every router and budget < 1 (``summary``'s rows)."""
    sets = {}
    psnr = {(r['dataset'], r['router'], r['budget']): r for r in records if r['kind'] == 'routed'}
    for row in summary(records):
        r = psnr[row['dataset'], row['router'], row['budget']]
        sets.setdefault(row['dataset'], []).append({
            'router': row['router'], 'budget': row['budget'], 'macs_run': r['executed_share'], 'psnr': r['psnr'],
            'fixed_at_equal_macs': row['fixed_at_equal_macs'], 'vs_fixed': row['vs_fixed'],
            'images_vs_fixed': row['images_vs_fixed'], 'fixed_images': row['fixed_images']})
    return {'default_router': default_router, 'sets': sets}


def budget_plot(records, path):
    """PNG of PSNR against the share of the teacher's MACs actually run (what the budget caps), one panel per
    set."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib import pyplot as plt
    except ImportError:
        raise ConfigError('--plot needs matplotlib: pip install matplotlib') from None
    datasets = list(dict.fromkeys(r['dataset'] for r in records))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        mine = [r for r in records if r['dataset'] == dataset]
        exits = sorted((r for r in mine if r['kind'] == 'exit'), key=lambda r: r['exit'])
        ax.plot([r['share'] for r in exits], [r['psnr'] for r in exits], 'ks', label='fixed outputs')
        for r in exits:
            ax.annotate(f'{r["exit"]} blocks', (r['share'], r['psnr']), textcoords='offset points', xytext=(4, -10),
                        fontsize=8)
        for router in dict.fromkeys(r['router'] for r in mine if r['kind'] == 'routed'):
            curve = sorted((r for r in mine if r.get('router') == router), key=lambda r: r['budget'])
            ax.plot([r['executed_share'] for r in curve], [r['psnr'] for r in curve], 'o-', ms=4, label=router)
        ax.set_xlabel("share of the teacher's MACs run (routers: context and halos included)")
        ax.set_ylabel('PSNR (dB, Y)')
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, dpi=110, format='png'))
    finally:
        plt.close(fig)


def write_budget(records, json_path=None, markdown_path=None, plot_path=None, vs_fixed_path=None, log=print):
    """Write the records (JSON: ``{"records": [...], "summary": [...]}``), their markdown, plot and ``vs_fixed``
    JSON where asked, each atomically; print the markdown."""
    import json
    data = {'records': records, 'summary': summary(records)}
    text = budget_markdown(records)
    for path, content in ((json_path, data), (vs_fixed_path, vs_fixed(records, DEFAULT_ROUTER))):
        if path:
            atomic_write(path, lambda f, content=content: json.dump(content, f, indent=1), mode='w')
            log(f'wrote {path}')
    if markdown_path:
        atomic_write(markdown_path, lambda f: f.write(text), mode='w')
        log(f'wrote {markdown_path}')
    if plot_path:
        budget_plot(records, plot_path)
        log(f'wrote {plot_path}')
    log('')
    log(text)
