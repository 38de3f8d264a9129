-- Placeholder: version 13 is the API tokens migration, which replaces this file.
SELECT 1;
