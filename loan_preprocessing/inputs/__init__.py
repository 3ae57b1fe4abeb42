"""How applications are read and checked: the validation rules of the schema
applied to whole columns (columns.py), CSV files read row by row (csv_rows.py,
the reference reading and its error messages) and as columns (csv_columns.py)."""
