"""Model bundle conversion (see tools/convert.py): one module per source format or component."""
