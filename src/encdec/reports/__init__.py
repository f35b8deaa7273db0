"""Architecture-comparison reports: tables, plots and paired bootstrap over run dirs."""
