from shared.config import reference


def test_configuration_reference_is_current() -> None:
    assert reference.TARGET.read_text() == reference.render(), "docs/configuration.md is stale: run `make docs`"


def test_reference_documents_every_section() -> None:
    text = reference.render()
    for section in ("MqttConfig", "InverterConfig", "MeterConfig", "BatteryConfig", "TariffConfig",
                    "DispatcherConfig", "RecorderConfig", "InfluxConfig", "ModbusTcp", "SolarmanV5"):
        assert f"## {section}" in text, section
