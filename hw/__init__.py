"""Amaranth HDL streaming encoder and decoder of the Cassandra format (see issue 4; not yet built)."""
