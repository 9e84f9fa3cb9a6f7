"""The summary and plot of an ``sd-eval --budget`` JSON, redrawn from its records without rerunning the evaluation
(``sd_plugin.evaluation.budget.summary``, ``budget_report.budget_plot``): rewrites the JSON's ``summary`` and the
PNG, and prints every router against random and against the fixed exits at equal MACs at the given budgets, paired
by image.

    python scripts/routing_summary.py docs/routing/budget.json --plot docs/routing/budget.png --budgets 0.6 0.7
"""
import argparse
import json

from sd_plugin.evaluation.budget import summary
from sd_plugin.evaluation.budget_report import budget_plot
from sd_plugin.files import atomic_write


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('json', help="sd-eval --budget's JSON")
    parser.add_argument('--plot', help='PNG to redraw')
    parser.add_argument('--budgets', type=float, nargs='+', default=[0.6, 0.7])
    args = parser.parse_args()
    with open(args.json) as f:
        data = json.load(f)
    data['summary'] = summary(data['records'])
    atomic_write(args.json, lambda f: json.dump(data, f, indent=1), mode='w')
    if args.plot:
        budget_plot(data['records'], args.plot)
    for row in data['summary']:
        if row['budget'] in args.budgets:
            print(f'{row["dataset"]} {row["router"]} at {row["budget"]:g}: {row["gap_recovered"]:.0%} of the gap, '
                  f'{versus(row["vs_random"], row["images_vs_random"])} vs random, '
                  f'{versus(row["vs_fixed"], row["images_vs_fixed"])} vs the fixed exits at equal MACs, '
                  f'{row["time_ratio"]:.2f} of the teacher\'s time')


def versus(difference, images):
    """'+0.0123 dB (images ahead / tied / behind: 3 / 1 / 1)'; '-' parts where the JSON lacks them."""
    text = '-' if difference is None else f'{difference:+.4f} dB'
    if images:
        text += f' (images ahead / tied / behind: {images["ahead"]} / {images["tied"]} / {images["behind"]})'
    return text


if __name__ == '__main__':
    main()
