"""Inventories from where fleets already are: Ansible inventories and Active Directory.

Each importer reads its source into an ``InventoryDraft`` (``draft.py``): hosts with their
effective connection, groups, proposed waves, where each came from, and the notices for the
operator (never a password). ``writer.py`` turns a draft into raorch's inventory YAML with
comments, and checks it by loading it back with the real loader before it is written.

Importers look down only at ``raorch.models``; the CLI (``raorch inventory ...``) prints.
"""
