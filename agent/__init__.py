"""Trace Edge Agent: RFID and barcode reads -> GS1 EPCIS 2.0 events -> durable buffer -> MQTT."""

__version__ = "0.1.0"
