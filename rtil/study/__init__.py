"""The vanilla-vs-RTIL study: `python -m rtil study --config configs/study/digits.yaml [--quick] [--stage S]`.

Five stages; each writes its outputs under the config's `out` folder and skips work already done, so an
interrupted study resumes where it stopped and a finished one reruns nothing: train (every generator a comparison
names), export (generator files, member sample grids, FDD against kimg on the digits, each member's FID and KID
against the test images when fid_samples > 0), tune (each method's candidate settings on the validation images, per
generator: "tuned"; the config's own settings are "common"), evaluate (every
comparison's generators x methods x settings x task cells on the test images, paired: the same images, operators,
noise and starts for every generator) and report (tables with CIs, paired differences, verdicts, figures, and the
per-image CSV they are computed from). A comparison pairs `baseline[i]` with `treatment[i]` (e.g. vanilla and RTIL
trained with the same seed); the report gives each pair and the pooled difference.

The modules follow the data, and each imports only the ones before it:

    config, config_checks, config_arms, config_reading   the typed StudyConfig, read and checked once from the
                                            YAML file (config_arms: snapshots and same-start generators)
    tuning, budgets, protocols              the tuning search (axes, coordinate search with lines that grow past
                                            an edge), the solver's budget axis (steps x factor) and named solver
                                            protocols (per-arm settings, e.g. a paper's)
    snapshots                               a trained generator's record and its checkpoint at a budget
    cells                                   the work-item files (tuning runs, evaluation cells), the per-image CSV
    stages                                  train, export, tune, evaluate: the items to do, doing one item
    report_stats, report_sections, report_generators, report_arms, report_budgets, report_protocols, report
                                            the report, from the cells (report_arms: training length, same start,
                                            quality-matched pairs; report_budgets: the step-budget axis;
                                            report_protocols: the named solver protocols)
    runner                                  the stages in order (worker processes), then the report: the CLI's entry
    estimate                                the time a study will take, from a short warm-up measured before it starts
    own_generator                           `python -m rtil study --generator FILE --data DIR --out OUT`: writes a
                                            study config for a pretrained generator and its image folder, runs it
"""

MODULE_ORDER = ("tuning", "budgets", "config", "config_checks", "protocols", "config_arms", "config_reading",
                "snapshots", "cells", "stages", "report_stats", "report_sections", "report_generators", "report_arms",
                "report_budgets", "report_protocols", "report", "runner", "estimate", "own_generator")
