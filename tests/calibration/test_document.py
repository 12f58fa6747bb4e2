"""The calibration document: a strict JSON round trip, and one-line refusals of a document that does not fit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prunesched.calibration.document import Calibration
from prunesched.errors import ConfigError
from tests.calibration.made import made


def test_a_calibration_survives_its_json_file_exactly(tmp_path):
    calibration = made([0.0, 0.1, 0.2], [0.0, 0.3, 0.4], [1.0, 0.99, 1.02])
    path = calibration.save(tmp_path / "calibration.json")
    text = path.read_text()
    assert "NaN" not in text and json.loads(text)["signals"]["output"] == [[None, 0.3, 0.4]]  # strict JSON: null at iteration 0
    loaded = Calibration.load(path)
    assert loaded.to_dict() == calibration.to_dict()
    np.testing.assert_array_equal(loaded.signals["blocks"], calibration.signals["blocks"])
    assert loaded.mean("output")[1:].tolist() == [0.3, 0.4]


def test_a_calibration_of_other_weights_or_another_loop_is_refused_in_one_line():
    calibration = made([0.0, 0.1, 0.2], [0.0, 0.3, 0.4], [1.0, 0.99, 1.02])
    calibration.check("tiny-sd", 3, "here")  # its own model and loop
    calibration.check(None, 3, "here")  # no model to compare with (the synthetic evaluator)
    with pytest.raises(ConfigError, match=r"^here: the calibration was recorded on 'tiny-sd' \(tiny-sd\), not on this model \(shapes@"):
        calibration.check("shapes@0123", 3, "here")
    with pytest.raises(ConfigError, match=r"covers 3 loop iterations .* but the search's schedules have 21; calibrate at the search's"):
        calibration.check("tiny-sd", 21, "here")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="prunesched.schedule"), "is not a calibration document"),
        (lambda d: d.update(version=2), "has calibration version 2; this prunesched reads version 1"),
        (lambda d: d.pop("prompts"), "field 'prompts' is missing"),
        (lambda d: d.update(extra=1), "field 'extra' is unknown"),
        (lambda d: d["signals"].update(output=[[None, 0.3]]), r"signal 'output' has shape \(1, 2\), expected \(1, 3\)"),
        (lambda d: d["signals"].update(output=[[0.1, 0.3, 0.4]]), "must be null at iteration 0"),
        (lambda d: d["signals"].update(output=[[None, "a", 0.4]]), "is malformed: signal 'output' holds 'a', not a number"),
        (lambda d: d.update(architecture="rnn"), "architecture 'rnn' is not one of unet, dit"),
    ],
)
def test_a_malformed_document_is_refused_in_one_line(tmp_path, change, message):
    data = made([0.0, 0.1, 0.2], [0.0, 0.3, 0.4], [1.0, 0.99, 1.02]).to_dict()
    change(data)
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message) as error:
        Calibration.load(tmp_path / "bad.json")
    assert "\n" not in str(error.value)
