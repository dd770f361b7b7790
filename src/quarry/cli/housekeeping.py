"""Housekeeping commands: rm (a dataset), gc (dry run by default) and fsck."""

from __future__ import annotations

from typing import Annotated

import typer

from quarry.cli.common import (
    DEFAULT_DATA,
    DataOpt,
    JsonOpt,
    echo,
    emit_json,
    errors,
    note,
    read_store,
)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} TB"


def register(app: typer.Typer) -> None:
    @app.command()
    def rm(
        name: Annotated[str, typer.Argument(help="The dataset to remove.")],
        as_json: JsonOpt = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Remove a dataset: its HEAD and aliases go at once (servers stop serving it within
        half a second); its versions and blobs stay until `quarry gc --apply` removes them."""
        with errors():
            event = read_store(data).delete_dataset(name)
            aliases = dict(event.extra.get("aliases", {}))
            if as_json:
                emit_json({"dataset": name, "deleted": True, "version": event.parent,
                           "aliases": aliases})
                return
            echo(f"removed {name} (HEAD was {(event.parent or '')[:12]}"
                 + (f"; aliases {', '.join(sorted(aliases))}" if aliases else "")
                 + "); its data stays until quarry gc --apply")

    @app.command()
    def gc(
        keep: Annotated[int, typer.Option(
            "--keep", min=1, help="Versions to keep per dataset (plus aliased ones).")] = 10,
        apply: Annotated[bool, typer.Option(
            "--apply", help="Really delete; without it, only show what would go.")] = False,
        grace: Annotated[float, typer.Option(
            "--grace", min=0, help="Never delete files younger than this (seconds).")] = 3600.0,
        as_json: JsonOpt = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Remove versions beyond the last KEEP of each dataset (aliased ones stay) and the
        blobs nothing kept references. A dry run unless --apply."""
        from quarry.store.gc import collect

        with errors():
            report = collect(read_store(data), keep=keep, apply=apply, grace=grace)
            if as_json:
                emit_json(report.to_json())
                return
            verb = "removed" if apply else "would remove"
            echo(f"gc {verb} {len(report.dropped_versions)} version(s) and "
                 f"{len(report.dropped_blobs)} blob(s), freeing "
                 f"{_size(report.freed_bytes)}; kept {report.kept_versions} version(s)"
                 + ("" if apply else " (dry run: add --apply to delete)"))
            for text in report.notes:
                note(f"note: {text}")

    @app.command()
    def fsck(
        as_json: JsonOpt = False,
        quick: Annotated[bool, typer.Option(
            "--quick", help="Skip re-hashing blobs (check structure only).")] = False,
        data: DataOpt = DEFAULT_DATA,
    ) -> None:
        """Re-verify every checksum, manifest and ref; exit 8 if anything is damaged."""
        from quarry.store.fsck import check

        with errors():
            report = check(read_store(data), verify_blobs=not quick)
            if as_json:
                emit_json(report.to_json())
            else:
                echo(f"checked {report.blobs} blob(s), {report.manifests} manifest(s), "
                     f"{report.datasets} dataset(s): "
                     + ("ok" if report.ok else f"{len(report.problems)} problem(s)"))
                if report.stale_temp_files:
                    echo(f"{report.stale_temp_files} stale temp file(s) of dead writers, "
                         f"{_size(report.stale_temp_bytes)} (the next quarry put or "
                         "serve removes them)")
                for p in report.problems:
                    echo(f"  {p.what} {p.name[:40]}: {p.detail}")
            if not report.ok:
                raise typer.Exit(8)
