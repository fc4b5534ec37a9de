"""`make bench`: measurements of the library and the CLI next to their physical floors.

`python -m bench.run` prints a Markdown table and writes it into BENCHMARKS.md between the markers
`<!-- core:begin -->` and `<!-- core:end -->`, leaving the rest of the file alone.
"""
