"""Processing provider "Building footprints (bfe)": one algorithm module per pipeline step."""
