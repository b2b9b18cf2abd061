"""`hlcore diff`: what a policy change does, not just which lines moved (docs/diff.md).

sides: resolve BASE / HEAD (git revision or directory) into loaded policies and settings.
semantic: the normalised, labelled change list (stricter / looser / neutral), from direction
metadata the policy and the settings schema declare. behaviour: every drill replayed under both
sides. history: a recorded tape of facts run through both. render: text, Markdown, JSON.
"""
