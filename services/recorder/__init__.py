"""The recorder: every reading on the bus into InfluxDB (or the embedded SQLite store), through a
durable spool, plus the daily statistics and the ``ongrid report`` renderer."""
