"""Development tools: never imported by a service, left out of the runtime image (.dockerignore).

``demo`` (``ongrid demo``: the seed house run by the real fleet), ``localbroker`` (a private
Mosquitto on a free port), ``devdb`` (throwaway InfluxDB / VictoriaMetrics servers) and
``demo_day`` (a realistic synthetic day of fleet messages). The tests, the benchmarks and the demo
share them so that each of these is written once.
"""
