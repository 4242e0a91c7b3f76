"""Tools that study or publish trained runs (stand-ins, reports)."""
