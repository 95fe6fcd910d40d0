"""Small shared pieces with no dependency beyond the standard library (numpy and OpenCV for images,
imported where used): errors, the one-line CLI report, atomic writes and hashes, image listing and
reading, int pairs and slide-window arithmetic, dtype names. Every other part of ``perception`` (the
torch-free ``deploy`` runtime included) imports them from here; nothing here imports the rest."""
