"""``pop3suite capacity``: grid sweeps of load cells, a fitted CPU cost model
and a hosting-guidance table derived from it (docs/capacity.md).

Modules, one job each: :mod:`.grid` (capacity scenario file -> cells),
:mod:`.sweep` (runs each cell as a normal load run), :mod:`.saturation`
(rules that mark a cell saturated), :mod:`.costmodel` (least-squares fit of
server CPU per poll), :mod:`.guidance` (the provider-style table).
"""
