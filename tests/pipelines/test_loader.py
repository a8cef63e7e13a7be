from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from pipelines.loader import PipelineConfigError, iter_pipeline_files, load_pipeline, parse_pipeline


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "example.yml"
    path.write_text(text)
    return path


def _errors(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    with pytest.raises(PipelineConfigError) as info:
        parse_pipeline("tenant/example", _write(tmp_path, text))
    return info.value.errors


def test_every_shipped_config_and_template_validates(capsys) -> None:
    assert {name for name, _ in iter_pipeline_files()} >= {"system/bootstrap", "tenant/onboarding"}
    call_command("validate_pipelines")
    assert "valid" in capsys.readouterr().out


def test_template_keys_merge_under_step_keys() -> None:
    pipeline = load_pipeline("tenant/onboarding")
    (step,) = pipeline.steps
    assert step.ps_type == "setup.onboarding"
    assert step.raw_config == {"dataset_type": "tenant_dataset"}
    assert step.retries == 2


def test_unknown_ps_type(tmp_path) -> None:
    errors = _errors(tmp_path, "description: x\nsteps:\n  - {step_id: a, ps_type: nope.nothing}\n")
    assert errors == [("steps[0].ps_type", "unknown ps_type 'nope.nothing'")]


def test_unknown_template(tmp_path) -> None:
    errors = _errors(tmp_path, "description: x\nsteps:\n  - {step_id: a, template: no/such}\n")
    assert errors == [("steps[0].template", "unknown template 'no/such'")]


def test_missing_and_extra_fields(tmp_path) -> None:
    errors = _errors(tmp_path, "steps:\n  - {step_id: a, ps_type: setup.onboarding}\nsurprise: 1\n")
    assert ("description", "field required") in errors
    assert ("surprise", "extra field not permitted") in errors


def test_processor_keys_are_validated(tmp_path) -> None:
    errors = _errors(
        tmp_path,
        "description: x\nsteps:\n  - {step_id: a, ps_type: setup.onboarding, "
        "dataset_type: tenant_dataset, colour: red}\n",
    )
    assert errors == [("steps[0].colour", "extra field not permitted")]


def test_unknown_dependency_and_cycle(tmp_path) -> None:
    errors = _errors(
        tmp_path,
        "description: x\nsteps:\n"
        "  - {step_id: a, ps_type: setup.onboarding, dataset_type: tenant_dataset, depends_on: [ghost]}\n",
    )
    assert errors == [("steps[0].depends_on", "unknown step 'ghost'")]
    errors = _errors(
        tmp_path,
        "description: x\nsteps:\n"
        "  - {step_id: a, ps_type: setup.onboarding, dataset_type: tenant_dataset, depends_on: [b]}\n"
        "  - {step_id: b, ps_type: setup.onboarding, dataset_type: tenant_dataset, depends_on: [a]}\n",
    )
    assert errors == [("steps", "dependency cycle: a -> b -> a")]


def test_yaml_aliases_are_refused(tmp_path) -> None:
    errors = _errors(tmp_path, "description: &d x\nvariables: {a: *d}\nsteps: []\n")
    assert errors[0][0] == "(file)"
    assert "aliases are not allowed" in errors[0][1]


def test_system_processors_are_refused_in_tenant_pipelines(tmp_path) -> None:
    with pytest.raises(PipelineConfigError) as info:
        parse_pipeline(
            "gcp/cost/example",
            _write(
                tmp_path,
                "description: x\nsteps:\n"
                "  - {step_id: a, ps_type: setup.onboarding, dataset_type: tenant_dataset}\n",
            ),
        )
    assert info.value.errors == [
        ("steps[0].ps_type", "'setup.onboarding' is only allowed in system pipelines")
    ]


def test_validate_pipelines_reports_file_path_message_and_exits_1(tmp_path, capsys) -> None:
    path = _write(tmp_path, "description: x\nsteps:\n  - {step_id: a, ps_type: nope.nothing}\n")
    with pytest.raises(CommandError):
        call_command("validate_pipelines", str(path))
    assert f"{path}: steps[0].ps_type: unknown ps_type 'nope.nothing'" in capsys.readouterr().out
