"""Shipped register maps (YAML data); a package only so that wheels carry the files."""
