"""What each table and figure of the report is, and which stored runs it reads: declared once, here.

The gather steps of the tables (`report.tables`) and the figures (`report.figures`) take their runs from
`Reads.runs`, `pacebench report --all` counts the runs behind each table with it (the provenance), and `--help`
lists the names from here. So this module stays light: it imports neither pandas nor the database, and it reads
the method and sweep registries (torch) only when runs are selected.

The tables are every suite file's paper table (`[reference.report]`, a `plan.suites.PaperTable`) and `CODE_TABLES`
below (over any suite); the figures are `FIGURES`. Each name has one gather step, registered under it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pacebench.choices import Phase, Status
from pacebench.errors import PacebenchError, UsageError
from pacebench.plan.suites import PaperTable, all_suites, load_suite
from pacebench.registry import Registry

if TYPE_CHECKING:
    from pacebench.plan.sweeps import Sweep
    from pacebench.store import RunRecord, Storage


@dataclass(frozen=True)
class Reads:
    """Which stored runs a table or figure reads: finished ones (status done) that today's code would give the same
    key (`runkey.is_current`: runs made before a change that alters their results are left out), of `suites` (None:
    every suite; `only` limits a suite to one dataset, as Table 5 reads vtab's cifar alone) and of the methods of
    `sweep` (`plan.sweeps.SWEEPS`: the runs it makes, in its phase; None: every method, phase 2).

    Asked for one suite, a table of one suite shows that suite's runs laid out as its own; a table of several suites
    shows the asked one's if it reads it, else nothing.
    """

    suites: tuple[str, ...] | None = None
    only: tuple[tuple[str, str], ...] = ()
    sweep: str | None = None

    def phase(self) -> Phase:
        return Phase(self._sweep().phase) if self.sweep else Phase.final

    def methods(self) -> list[str] | None:
        return list(self._sweep().method_grids()) if self.sweep else None

    def _sweep(self) -> Sweep:
        from pacebench.plan.sweeps import SWEEPS  # lazy: torch (sweeps read the method registry)

        assert self.sweep is not None
        return SWEEPS.get(self.sweep)

    def scope(self, suite: str | None = None, dataset: str | None = None) -> list[tuple[str | None, list[str] | None]]:
        """The (suite, datasets) pairs to read: None for every suite, or every dataset of the suite."""
        if suite is None:
            suites: list[str | None] = list(self.suites) if self.suites is not None else [None]
        elif self.suites is None or suite in self.suites or len(self.suites) == 1:
            suites = [suite]
        else:
            return []
        pairs = []
        only = dict(self.only)
        for name in suites:
            try:
                datasets = dataset_names(name, dataset)
            except UsageError:
                if len(suites) > 1:
                    continue  # of several suites, those that do not define the dataset
                raise
            if name in only:
                kept = load_suite(name).dataset(only[name]).name
                if datasets is not None and kept not in datasets:
                    continue
                datasets = [kept]
            pairs.append((name, datasets))
        return pairs

    def runs(
        self, store: Storage, suite: str | None = None, dataset: str | None = None, phase: str | None = None
    ) -> list[RunRecord]:
        """The finished runs read, optionally of one suite and dataset (an alias names its canonical dataset; without
        a suite, in whichever suites define it), in `phase` (default: `self.phase()`)."""
        from pacebench.plan.runkey import is_current  # lazy: torch (run keys read the method registry)

        return one_copy([r for r in self._stored(store, suite, dataset, phase) if is_current(r)])[0]

    def other_copies(self, store: Storage, suite: str | None = None, dataset: str | None = None) -> list[RunRecord]:
        """The finished runs it leaves out because they were made on another copy of their data set's files."""
        from pacebench.plan.runkey import is_current  # lazy: torch (run keys read the method registry)

        return one_copy([r for r in self._stored(store, suite, dataset) if is_current(r)])[1]

    def outdated(self, store: Storage, suite: str | None = None, dataset: str | None = None) -> list[RunRecord]:
        """The finished runs it would read but leaves out: made before a pacebench change that alters their results."""
        from pacebench.plan.runkey import is_current  # lazy: torch (run keys read the method registry)

        return [r for r in self._stored(store, suite, dataset) if not is_current(r)]

    def _stored(
        self, store: Storage, suite: str | None, dataset: str | None, phase: str | None = None
    ) -> list[RunRecord]:
        methods = self.methods()
        runs = [
            r
            for name, datasets in self.scope(suite, dataset)
            for r in store.runs(
                phase=phase or self.phase(), status=Status.done, suite=name, dataset=datasets, method=methods
            )
        ]
        return sorted(runs, key=lambda r: r.id)


def one_copy(runs: list[RunRecord]) -> tuple[list[RunRecord], list[RunRecord]]:
    """(kept, left out): per data set, the runs of the copy most of its runs were made on (`data.fingerprint`; then
    the copy of the newest run); runs on other copies are left out, never averaged with them."""
    by_data: dict[tuple[str, str], dict[str, list[RunRecord]]] = {}
    for run in runs:
        by_data.setdefault((run.suite, run.dataset), {}).setdefault(run.data_fingerprint, []).append(run)
    kept = set()
    for copies in by_data.values():
        best = max(copies.values(), key=lambda rs: (len(rs), max(r.id for r in rs)))
        kept |= {r.id for r in best}
    return [r for r in runs if r.id in kept], [r for r in runs if r.id not in kept]


def dataset_names(suite: str | None, dataset: str | None) -> list[str] | None:
    """The canonical names `dataset` stands for, in `suite` or in any suite that defines it; None: every dataset."""
    if dataset is None:
        return None
    if suite is not None:
        return [load_suite(suite).dataset(dataset).name]
    return sorted(
        {ds.name for s in all_suites().values() for ds in s.datasets.values() if dataset in (ds.name, *ds.aliases)}
    ) or [dataset]


@dataclass(frozen=True, eq=False)  # one entry under its name and aliases: told apart by identity
class TableEntry:
    """A table: its name (and aliases for `--table`), what it shows, which runs it reads (None: none, the speed
    table reads `pacebench bench`'s rows) and, for a paper table, the suite file that declares it."""

    name: str
    description: str
    reads: Reads | None
    aliases: tuple[str, ...] = ()
    paper: PaperTable | None = None
    suite: str | None = None


CODE_TABLES = (
    TableEntry(
        "demo",
        "Per method: seeds, test accuracy (mean ± std), train accuracy, gap, final grad norm, FP-distance",
        Reads(suites=("demo",)),
    ),
    TableEntry(
        "ablations",
        "Table 6: the ablations on one dataset, measured mean ± std, the paper's column beside",
        Reads(sweep="table6"),
        aliases=("6", "table6"),
    ),
    TableEntry(
        "backbones",
        "Table 5: other backbones (ViT-B IN-21k, ViT-B LAION-2B->IN-12k, Swin-B) on CIFAR-100 and domain adaptation",
        Reads(suites=("vtab", "domain"), only=(("vtab", "cifar"),)),
        aliases=("5", "table5"),
    ),
    TableEntry(
        "params",
        "Trainable parameters (M) per suite: counted on the suite's settings, measured in finished "
        "runs, and the paper's printed 'params (M)'",
        Reads(),
        aliases=("parameters",),
    ),
    TableEntry(
        "speed", "`pacebench bench` measurements: ms/step, images/s, FLOP and time ratios to the baseline, MFU", None
    ),
)


def tables() -> Registry[TableEntry]:
    """Every table by name and alias: the suite files' paper tables in the paper's order, the code's tables, then the
    suite files' tables without a paper number (the slides' text tables). A name used twice (by two suite files, or
    a suite file and the code) is an error naming it."""
    declared = [
        TableEntry(
            s.paper_table.name,
            s.paper_table.description,
            Reads(suites=(s.name,)),
            s.paper_table.aliases,
            s.paper_table,
            s.name,
        )
        for s in all_suites().values()
        if s.paper_table is not None
    ]
    by_number = [(e.paper.number, e) for e in declared if e.paper and e.paper.number is not None]
    numbered = [e for _, e in sorted(by_number, key=lambda pair: pair[0])]
    others = [e for e in declared if e.paper and e.paper.number is None]
    found = Registry[TableEntry]("table")
    for entry in [*numbered, *CODE_TABLES, *others]:
        for key in (entry.name, *entry.aliases):
            if key in found:
                raise PacebenchError(
                    f"table name {key!r} is declared twice (suite files' [reference.report] and "
                    "report.select.CODE_TABLES); rename one"
                )
            found.register(key)(entry)
    return found


def table_names() -> list[str]:
    """Canonical table names (aliases left out), in order."""
    return list(dict.fromkeys(entry.name for _, entry in tables().items()))


@dataclass(frozen=True)
class FigureEntry:
    """A figure: its name for `pacebench plot`, the paper's figure numbers (or what it shows), which runs it reads,
    whether it spans a dataset's data variants (a panel per shot count) rather than showing one, whether it spans a
    whole suite (one figure per suite, not per data set), and the caption `report --all` gives it."""

    name: str
    title: str
    reads: Reads = Reads()
    spans_options: bool = False
    suite_wide: bool = False
    caption: str = "Lines: mean over seeds; bands: min to max over seeds."


FIGURES: Registry[FigureEntry] = Registry("figure")
for _figure in (
    FigureEntry("grad-norm", "Fig. 2a/3a"),
    FigureEntry("fp-distance", "Fig. 2b/3b"),
    FigureEntry("accuracy", "Fig. 2c/3c"),
    FigureEntry("lambda-sweep", "Fig. 4, App. Figs. 7-8", Reads(sweep="figure4")),
    FigureEntry("efficiency", "Fig. 5", Reads(sweep="figure5")),
    FigureEntry("sensitivity", "Fig. 6", Reads(sweep="figure6"), spans_options=True),
    FigureEntry(
        "compare",
        "Is PACE's gain real",
        suite_wide=True,
        caption="Δ = PACE - baseline per data set with its 95% interval (paired on the test examples where "
        "predictions are stored), then the suite's mean and IQM with stratified intervals.",
    ),
    FigureEntry(
        "ranks",
        "Critical-difference diagram",
        suite_wide=True,
        caption="Average rank over the suite's data sets (1 = best); methods joined by a bar are not told "
        "apart by the Nemenyi test (Demšar, 2006).",
    ),
):
    FIGURES.register(_figure.name)(_figure)
