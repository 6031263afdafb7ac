"""makemore-size runs: both backends train, the CLI writes a record, bad input is rejected."""
import json

import pytest

from microgpt_lib.train import makemore


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend must be"):
        makemore.makemore_run(1, progress=False, backend="torch")


def test_cli_writes_a_record_with_the_command_that_reproduces_it(tmp_path):
    pytest.importorskip("fastops", reason="fastops is not built: run `make build`")
    out = tmp_path / "record.json"
    makemore.main(["--steps", "3", "--backend", "cython", "--json", str(out)])
    record = json.loads(out.read_text())
    assert record["command"].endswith("--steps 3 --lr 0.003 --weight-decay 0.1 --backend cython")
    assert record["steps"] == 3 and not record["interrupted"]
    assert record["val_steps"][-1] == 2 and len(record["val_losses"]) == len(record["val_steps"])
    assert 2.5 < record["final_val_loss"] < 3.5  # a few steps from about ln(27) = 3.3
