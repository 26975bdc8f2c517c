"""``ongrid report``: the dashboards' views as PNG files and one HTML page (matplotlib, Agg)."""
