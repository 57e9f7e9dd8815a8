"""The athlete's trend report: gathered from the store, drawn as a figure and an HTML page."""
