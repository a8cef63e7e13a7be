from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipelines.loader import PipelineConfigError, iter_pipeline_files, load_template, parse_pipeline


class Command(BaseCommand):
    help = "Validate pipeline configs and step templates; prints every error as 'file: path: message'."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "paths", nargs="*", help="Config files to check (default: every shipped config and template)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        configs_root = Path(settings.PIPELINE_CONFIGS_DIR).resolve()
        templates_root = Path(settings.PIPELINE_TEMPLATES_DIR).resolve()
        errors: list[str] = []
        checked = 0
        if options["paths"]:
            targets = [Path(raw).resolve() for raw in options["paths"]]
        else:
            targets = [path for _name, path in iter_pipeline_files()]
            targets += sorted(templates_root.rglob("*.yml"))
        for path in targets:
            checked += 1
            try:
                if templates_root in path.parents:
                    load_template(str(path.relative_to(templates_root).with_suffix("")))
                else:
                    name = (
                        str(path.relative_to(configs_root).with_suffix(""))
                        if configs_root in path.parents
                        else path.stem
                    )
                    parse_pipeline(name, path)
            except PipelineConfigError as exc:
                errors.extend(f"{exc.file}: {location}: {message}" for location, message in exc.errors)
            except KeyError:
                errors.append(f"{path}: (file): not a template name")
        for line in errors:
            self.stdout.write(line)
        if errors:
            raise CommandError(f"{len(errors)} error(s) in {checked} file(s)")
        self.stdout.write(self.style.SUCCESS(f"{checked} file(s) valid"))
