"""The summary and plot of an ``sd-eval --budget`` JSON, redrawn from its records without rerunning the evaluation
(``sd_plugin.evaluation.budget.summary``, ``budget_report.budget_plot``): rewrites the JSON's ``summary`` and the
PNG, and prints every router against random at the given budgets, paired by image.

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
            images = row['images_vs_random']
            print(f'{row["dataset"]} {row["router"]} at {row["budget"]:g}: {row["gap_recovered"]:.0%} of the gap, '
                  f'{row["vs_random"]:+.4f} dB vs random (images ahead / tied / behind: {images["ahead"]} / '
                  f'{images["tied"]} / {images["behind"]}), {row["time_ratio"]:.2f} of the teacher\'s time')


if __name__ == '__main__':
    main()
