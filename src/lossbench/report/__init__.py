"""The study's report: collect runs, summarise over seeds, tables and figures."""
