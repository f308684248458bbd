import pytest
import yaml

from robustkd.config import load_config, merge_configs, validate_config
from robustkd.errors import ConfigError


@pytest.fixture
def base(repo_root):
    return yaml.safe_load((repo_root / "config" / "config.yaml").read_text())


@pytest.fixture
def schema(repo_root):
    return repo_root / "config" / "schema.yaml"


def test_shipped_configs_validate(repo_root):
    cfg = load_config(repo_root / "config" / "config.yaml", repo_root / "config" / "demo.yaml")
    assert cfg["demo_raw"]["enabled"] is True
    # The overlay merges into nested sections instead of replacing them.
    assert cfg["data"]["datasets"]["imagenet100"]["class_list"] == "config/imagenet100.txt"
    assert cfg["data"]["datasets"]["imagenet100"]["n_classes"] == 10
    assert cfg["distortions"]["blur-37-9"] == {"family": "blur", "kernel": 37, "sigma": 9.0}


@pytest.mark.parametrize(
    "overlays", [(), ("config/demo.yaml",), ("config/demo.yaml", "config/tiny.yaml")]
)
def test_crd_temperature_is_the_craft_papers(repo_root, overlays):
    # The CRAFT paper's Table 1: contrastive temperature 0.1 "for CRD/CRAFT" (CRD's own: 0.07).
    cfg = load_config(repo_root / "config" / "config.yaml", *(repo_root / o for o in overlays))
    objectives = cfg["craft"]["objectives"]
    assert objectives["crd"]["nce_t"] == 0.1
    assert objectives["craft"]["tau"] == 0.1


def test_cmc_class_list_is_the_reference(repo_root):
    import hashlib

    digest = hashlib.sha256((repo_root / "config" / "imagenet100.txt").read_bytes()).hexdigest()
    assert digest.startswith("79f3f155") and digest.endswith("1397")


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ({"extra_key": 1}, "unknown config key 'extra_key'"),
        ({"data": {"downlod": True}}, "unknown config key 'data.downlod'"),
        ({"data": {"download": "yes"}}, "config key 'data.download': 'yes' is not of type"),
        ({"seeds": [0, "1"]}, "config key 'seeds.1'"),
        ({"distortions": {"mask-0.75": {"family": "mask", "p": 1.5}}}, "distortions.mask-0.75.p"),
        ({"distortions": {"warp-1": {"family": "warp"}}}, "distortions.warp-1.family"),
        (
            {"distortions": {"Mask_1": {"family": "mask", "p": 0.5}}},
            "config key 'distortions': 'Mask_1' does not match",
        ),
        (
            {"distortions": {"noise-0.3": {"family": "noise", "sigma": 0.3, "p": 1}}},
            "unknown config key 'distortions.noise-0.3.p'",
        ),
        (
            {"experiments": {"table1": {"distortions": ["mask-0.5"]}}},
            "experiments.table1.distortions': unknown distortion 'mask-0.5'",
        ),
        (
            {"experiments": {"table2": {"datasets": ["mnist"]}}},
            "unknown dataset 'mnist'",
        ),
        ({"demo_raw": {"cifar10": {"train_per_class": 0}}}, "demo_raw.cifar10.train_per_class"),
        ({"jobs": {"seeds_per_job": "each"}}, "jobs.seeds_per_job"),
        ({"training": {"distill": {"compile": "yes"}}}, "training.distill.compile"),
        (
            {"experiments": {"corruptions": {"corruptions": ["saturate", "speckle_noise"]}}},
            "config key 'experiments.corruptions.corruptions': ['saturate', 'speckle_noise'] "
            "holds none of the 15 benchmark corruptions",
        ),
    ],
)
def test_bad_config_names_the_key(base, schema, overlay, message):
    with pytest.raises(ConfigError, match=None) as info:
        validate_config(merge_configs(base, overlay), schema)
    assert message in str(info.value)


def test_merge_does_not_modify_inputs():
    base = {"a": {"b": 1, "c": [1]}}
    merged = merge_configs(base, {"a": {"b": 2}})
    assert merged == {"a": {"b": 2, "c": [1]}}
    assert base == {"a": {"b": 1, "c": [1]}}


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


_WEAK = {
    "mask-0.85": {"family": "mask", "p": 0.85},
    "noise-0.4": {"family": "noise", "sigma": 0.4},
    "blur-31-11": {"family": "blur", "kernel": 31, "sigma": 11.0},
}


@pytest.mark.parametrize(
    ("ladder", "message"),
    [
        (  # issue 26's ladder: a weaker mask first
            {"train": "mask-0.90", "test": ["mask-0.85", "noise-0.4"]},
            "config key 'experiments.fig2.ladders.0.test.0': 'mask-0.85' (p 0.85) is not "
            "stronger than the trained 'mask-0.90' (p 0.9)",
        ),
        (
            {"train": "mask-0.90", "test": ["mask-0.95", "noise-0.4"]},
            "config key 'experiments.fig2.ladders.0.test.1': 'noise-0.4' is a noise distortion, "
            "but the ladder trains on 'mask-0.90' (mask)",
        ),
        (
            {"train": "mask-0.90", "test": ["mask-0.90"]},
            "'mask-0.90' (p 0.9) is not stronger than the trained 'mask-0.90' (p 0.9)",
        ),
        (
            {"train": "noise-0.5", "test": ["noise-0.3"]},
            "'noise-0.3' (sigma 0.3) is not stronger than the trained 'noise-0.5' (sigma 0.5)",
        ),
        (  # a larger sigma, but a smaller kernel
            {"train": "blur-37-9", "test": ["blur-31-11"]},
            "'blur-31-11' (kernel 31, sigma 11.0) is not stronger than the trained 'blur-37-9' "
            "(kernel 37, sigma 9.0); a blur test setting needs kernel and sigma at least as large",
        ),
        (
            {"train": "mixed", "test": ["mask-0.95"]},
            "config key 'experiments.fig2.ladders.0.train': 'mixed' is a mixed distortion",
        ),
    ],
)
def test_fig2_ladder_tests_stronger_settings_of_the_trained_family(base, schema, ladder, message):
    overlay = {"distortions": _WEAK, "experiments": {"fig2": {"ladders": [ladder]}}}
    with pytest.raises(ConfigError) as info:
        validate_config(merge_configs(base, overlay), schema)
    assert message in str(info.value)


def test_fig2_ladder_accepts_a_blur_stronger_in_one_parameter(base, schema):
    ok = {"train": "blur-37-9", "test": ["blur-37-11", "blur-45-9"]}
    dists = {
        "blur-37-11": {"family": "blur", "kernel": 37, "sigma": 11.0},
        "blur-45-9": {"family": "blur", "kernel": 45, "sigma": 9.0},
    }
    validate_config(
        merge_configs(base, {"distortions": dists, "experiments": {"fig2": {"ladders": [ok]}}}),
        schema,
    )
