import pytest

from asrforge.config import apply_overrides
from asrforge.errors import ConfigError
from asrforge.config import to_dict
from asrforge.recipe import load_recipe, recipe_from_dict
from asrforge.registry import MODELS, PRETRAINED_MODELS
from conftest import REPO

DEMO = REPO / "configs" / "demo_ctc.yaml"


def test_demo_recipe_loads_and_overrides_apply():
    r = load_recipe(DEMO, ["data.train=/x/train.jsonl", "data.dev=/x/dev.jsonl", "train.max_minutes=3",
                           "model.encoder.rnn_type=gru", "train.lr=1e-4"])
    assert r.data.train == "/x/train.jsonl" and r.train.max_minutes == 3.0
    assert r.model.encoder.rnn_type == "gru" and r.model.family == "ctc" and r.train.lr == pytest.approx(1e-4)
    assert r.features.dim == 80


@pytest.mark.parametrize("override,message", [
    ("model.encoder.hiden=3", "unknown key.*model.encoder.hiden.*allowed under model.encoder:.*hidden"),
    ("model.family=wav2vec", "unknown model family 'wav2vec'; choose one of: ctc"),
    ("model.encoder.rnn_type=transformer", "must be one of"),
    ("train.epochs=many", "train.epochs must be int"),
    ("model.dropout=1.5", "dropout"),
    ("nosuchsection.x=1", "unknown key"),
    ("oops", "key.sub=value"),
])
def test_bad_recipes_fail_with_allowed_values(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(DEMO, [override])


def test_missing_recipe_file(tmp_path):
    with pytest.raises(ConfigError, match="neither a YAML file nor a shipped recipe; shipped: demo_conformer_ctc, demo_conformer_rnnt, demo_ctc"):
        load_recipe(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="is neither"):
        load_recipe("demo_cct")


def test_override_parsing():
    tree = apply_overrides({}, ["a.b=3", "a.c=[1, 2]", "d=null", "e=text"])
    assert tree == {"a": {"b": 3, "c": [1, 2]}, "d": None, "e": "text"}


def test_a_section_given_a_scalar_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: 5\n")
    with pytest.raises(ConfigError, match="train must be a section"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="model must be a section"):
        load_recipe(DEMO, ["model=3"])


@pytest.mark.parametrize("recipe", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_every_shipped_recipe_loads(recipe):
    r = load_recipe(REPO / "configs" / recipe)
    assert r.model.family in MODELS.names() + PRETRAINED_MODELS.names()
    assert load_recipe(recipe.removesuffix(".yaml")) == r == load_recipe(recipe)    # by name, as shipped
    if recipe.startswith("demo_"):   # every demo recipe names the family its file promises
        expected = {"demo_conformer_ctc.yaml": ("ctc", "conformer"), "demo_ctc.yaml": ("ctc", "rnn"),
                    "demo_las.yaml": ("las", "pyramid"), "demo_transformer.yaml": ("transformer", "transformer"),
                    "demo_joint.yaml": ("joint", "conformer"), "demo_rnnt.yaml": ("rnnt", "rnn"),
                    "demo_conformer_rnnt.yaml": ("rnnt", "conformer"),
                    "demo_ctc_streaming.yaml": ("ctc", "rnn"), "demo_rnnt_streaming.yaml": ("rnnt", "conformer"),
                    "demo_ctc_fbank.yaml": ("ctc", "conformer"), "demo_rnnt_fbank.yaml": ("rnnt", "conformer"),
                    "demo_rnnt_fbank_streaming.yaml": ("rnnt", "conformer")}[recipe]
        assert (r.model.family, r.model.encoder.kind) == expected
        # a streaming recipe is its offline one with a causal encoder and features that need no future audio
        assert getattr(r.model, "streaming", False) == recipe.endswith("_streaming.yaml")
        if recipe.endswith("_streaming.yaml"):
            offline = load_recipe({"demo_ctc_streaming.yaml": "demo_ctc", "demo_rnnt_streaming.yaml": "demo_conformer_rnnt",
                                   "demo_rnnt_fbank_streaming.yaml": "demo_rnnt_fbank"}[recipe])
            assert r.model.encoder.causal and not offline.model.encoder.causal and r.features.cmvn == "global"
            assert (r.train, r.specaugment, r.model.family) == (offline.train, offline.specaugment, offline.model.family)
            assert getattr(r.model, "predictor", None) == getattr(offline.model, "predictor", None)
            if offline.features.kind == "kaldi_fbank":      # sherpa-onnx's front end, computed as audio arrives
                assert r.features == offline.features
        if recipe.endswith("_fbank.yaml"):      # sherpa-onnx's front end, its conformer recipe's model otherwise
            offline = load_recipe({"demo_ctc_fbank.yaml": "demo_conformer_ctc",
                                   "demo_rnnt_fbank.yaml": "demo_conformer_rnnt"}[recipe])
            assert r.features.kind == "kaldi_fbank" and r.features.cmvn == "global" and r.features.fmin == 20.0
            assert (r.train, r.specaugment, r.model.encoder) == (offline.train, offline.specaugment, offline.model.encoder)


def test_checkpoints_saved_with_a_retired_setting_load_when_it_was_off():
    """Checkpoints saved before features.stats_floor_db was replaced hold it as null: they load. One trained with it
    set cannot be normalized as it was trained, and says so instead of loading with other statistics."""
    saved = to_dict(load_recipe(REPO / "configs" / "fsdd_ctc.yaml"))
    saved["features"]["stats_floor_db"] = None
    assert recipe_from_dict(saved).features.cmvn == "speaker"
    saved["features"]["stats_floor_db"] = 30.0
    with pytest.raises(ConfigError, match=r"features.stats_floor_db=30.0.*retrain"):
        recipe_from_dict(saved)
    del saved["features"]["stats_floor_db"]
    saved["features"]["stats_floor"] = 1.0   # any other unknown key is still refused
    with pytest.raises(ConfigError, match="unknown key"):
        recipe_from_dict(saved)
