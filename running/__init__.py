"""One GEM program over a corpus: reading, duplicates, the journal, the engines that run it
(threads in one process, or a Ray Dataset), the tables, the summary, tracking and exports."""
