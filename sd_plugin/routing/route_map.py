"""The route map: a small PNG of which output each LR tile got, over the LR image, with a legend."""
import numpy as np

from sd_plugin.errors import ConfigError
from sd_plugin.files import atomic_write
from sd_plugin.routing.bicubic import BICUBIC, output_name

EXIT_COLOURS = ('#4daf4a', '#377eb8', '#ff7f00', '#984ea3', '#a65628', '#f781bf')  # cheapest first
TEACHER_COLOUR = '#e41a1c'
BICUBIC_COLOUR = '#ffff33'


def save_route_map(plan, path, lr=None, title=None):
    """Write the route map of ``plan`` (``sd_plugin.routing.plan.RoutePlan``) to ``path`` (PNG).

    Args:
        lr (ndarray | None): the uint8 LR image, (H, W, 3) RGB or (H, W) grey, shown in grey under the tiles.
        title (str | None): the title; default: the budget and the share spent.
    """
    try:
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib import pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        raise ConfigError('--route-map needs matplotlib: pip install matplotlib') from None
    height, width = plan.grid[-1][1], plan.grid[-1][3]
    exits = len(plan.depths) - 1
    below = [BICUBIC_COLOUR] if plan.depths[0] == BICUBIC else []
    colours = below + [EXIT_COLOURS[i % len(EXIT_COLOURS)] for i in range(exits - len(below))] + [TEACHER_COLOUR]
    index = {d: i for i, d in enumerate(plan.depths)}
    side = 5.0 / max(width, height, 1)  # inches per LR pixel: the longer side 5 inches
    fig, ax = plt.subplots(figsize=(width * side, height * side))
    if lr is not None:
        grey = lr if lr.ndim == 2 else lr.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        ax.imshow(grey, cmap='gray', vmin=0, vmax=255, extent=(0, width, height, 0))
    for (y0, y1, x0, x1), d in zip(plan.grid, plan.route):
        ax.add_patch(matplotlib.patches.Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=colours[index[d]],
                                                  alpha=0.45 if lr is not None else 1, edgecolor='white', lw=0.5))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    labels = [f'{output_name(d, plan.depths)}{f" ({d} {plan.unit}s)" if d else ""}: {plan.counts.get(d, 0)} tiles'
              for d in plan.depths]
    ax.legend(handles=[Patch(color=c, label=t) for c, t in zip(colours, labels)], loc='upper left',
              bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    ran = 'the routed mix' if plan.fixed is None else f'{output_name(plan.fixed, plan.depths)} everywhere (fixed)'
    ax.set_title(title or f'router {plan.router}, budget {plan.budget:g}: {ran} ran, {plan.executed:.3f} of the '
                 'teacher\'s MACs', fontsize=9)
    try:
        atomic_write(path, lambda f: fig.savefig(f, dpi=100, format='png', bbox_inches='tight'))
    finally:
        plt.close(fig)
