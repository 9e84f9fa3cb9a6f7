"""sd-study: seeded, paired comparisons of training recipes for the student, with learning curves.

``spec``: the study file and the BasicSR options of each (arm, seed) run, and the paired initial weights.
``runner``: runs every (arm, seed) with ``sd-train --auto_resume``, several at a time, resumable.
``report``: learning curves and paired differences with confidence intervals, as JSON, markdown and PNG.
"""
