"""Data rescue: discover CKAN datasets, rank what is at risk, allocate it to nodes, verify their copies.

Modules: :mod:`~earthkeep.rescue.settings` (``[rescue]``), :mod:`~earthkeep.rescue.tables`,
:mod:`~earthkeep.rescue.harvest` (persist what :mod:`earthkeep.sources.ckan` finds, with history),
:mod:`~earthkeep.rescue.assets` (resources -> assets), :mod:`~earthkeep.rescue.probe` (HEAD sizes,
landing-page scraping), :mod:`~earthkeep.rescue.priority`, :mod:`~earthkeep.rescue.allocation`,
:mod:`~earthkeep.rescue.verify`, :mod:`~earthkeep.rescue.bags` (BagIt), :mod:`~earthkeep.rescue.node`.
"""
