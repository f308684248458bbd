# Helpers of the CRAFT study's rules (workflow/rules/craft.smk); paths come from
# robustkd.craft.layout, which the package's jobs and report read too.
from robustkd.craft import layout as craft_layout


def get_craft_cifar10c():
    """Corruption -> its file of the corrupted test set."""
    return craft_layout.cifar10c_files(config)


def get_craft_cifar10c_labels():
    """The labels of the corrupted test set."""
    return craft_layout.cifar10c_labels()


def get_craft_teacher(kind):
    """The teacher's ``weights`` or ``metrics`` file."""
    return craft_layout.teacher_files()[kind]


def get_craft_method_constraint():
    """Regex of the {craft_method} wildcard: one of the configured methods."""
    return "|".join(config["methods"]["craft"])


def get_craft_student_priority(wildcards):
    """Start the costliest method first: CRAFT (M + 1 views), then the distillations, ERM."""
    return {"craft": 2, "erm": 0}.get(wildcards.craft_method, 1)


def get_craft_conditions():
    """Names of every student's per-condition evaluation files."""
    return craft_layout.eval_conditions(config)


def get_craft_student_outputs(kind):
    """Weights, metrics or record of one student job: its seed's or every seed's (wildcards
    kept)."""
    if kind == "record":
        return [run_record(f) for f in get_craft_student_outputs("weights")]
    return [craft_layout.student_files("{craft_method}", s)[kind] for s in JOB_SEEDS]


def get_craft_eval_outputs():
    """Per-condition evaluation files of one student job's seeds (wildcards kept)."""
    return [
        craft_layout.eval_file("{craft_method}", s, c)
        for s in JOB_SEEDS
        for c in get_craft_conditions()
    ]


def get_craft_report_inputs():
    """Every file the report reads: the teacher's and every student's evaluation."""
    files = [get_craft_teacher("metrics")]
    for m in config["methods"]["craft"]:
        for s in config["seeds"]:
            files.append(craft_layout.student_files(m, s)["metrics"])
            files += [craft_layout.eval_file(m, s, c) for c in get_craft_conditions()]
    return files


def get_craft_report_config():
    """The config values the report uses."""
    return {
        "craft": scientific(config["craft"]),
        "methods": {"craft": config["methods"]["craft"]},
        "seeds": config["seeds"],
    }


def get_craft_outputs():
    """Every output of the CRAFT study (the target `craft`)."""
    return craft_layout.study_outputs(config)


# The study in the report (category "CRAFT study"): each table's HTML and each figure, with its
# caption (workflow/report/craft_*.rst).
CRAFT_CAPTIONS = {
    "craft_table": "craft_table.rst",
    "craft_per_corruption": "craft_per_corruption.rst",
    "craft_per_severity": "craft_per_severity.rst",
    "clean_vs_robust": "craft_clean_vs_robust.rst",
    "pairwise_differences": "craft_pairwise_differences.rst",
    "per_corruption": "craft_per_corruption_figure.rst",
    "training_curves": "craft_training_curves.rst",
    "nan_counts": "craft_nan_counts.rst",
    "cost_vs_robustness": "craft_cost_vs_robustness.rst",
    "alignment_heatmap": "craft_alignment_heatmap.rst",
}


def get_craft_report_flags():
    """The study's tables and figures in the report: path -> report() arguments."""
    root = craft_layout.ROOT
    flags = {}
    for t in craft_layout.TABLES:
        flags[f"{root}/tables/{t}.html"] = {
            "caption": f"../report/{CRAFT_CAPTIONS[t]}",
            "category": "CRAFT study",
            "subcategory": "Tables",
            "labels": {"table": t},
        }
    for fig in craft_layout.FIGURES:
        flags[f"{root}/figures/{fig}.png"] = {
            "caption": f"../report/{CRAFT_CAPTIONS[fig]}",
            "category": "CRAFT study",
            "subcategory": "Figures",
            "labels": {"figure": fig},
        }
    return flags
