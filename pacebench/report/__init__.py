"""Tables and figures from the results database: which runs each reads, a pure gather step, a render step.

    select.py    what each table and figure is and which runs it reads, declared once (light: --help lists it)
    tables/      gather steps: name -> TableData (title, DataFrame, notes), over one cell aggregator (`cells`)
    render.py    TableData -> a terminal table (laid out for its width), Markdown, LaTeX, CSV or HTML
    figures.py   gather steps -> DataFrame, and matplotlib draw steps
    page.py      `report --all`: every table and figure on one HTML page
    labels.py    how runs are told apart and named; reference.py: the paper's numbers

Nothing is imported here, so that `pacebench --help` can read `select` without pandas or the database.
"""
