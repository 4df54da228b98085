"""Faults: what defectkit promises when the input is bad or the run goes wrong.

Each module is one group of promises, each test one promise, run on tiny generated data:

* test_outputs.py      nothing a user has is overwritten without --force; an output that
                       cannot be written (read-only, full disk, a folder) fails before the
                       work, naming the path the user gave, and leaves no partial file
* test_images.py       mixed folders (grayscale, RGBA, 16-bit, palette, truncated, 0-byte,
                       text, huge and tiny images): readable ones are used, every other one
                       is named with its reason
* test_masks.py        a mask of the wrong size is reported; --strict makes it an error
* test_layouts.py      training needs only normal images; test-side problems are test's
* test_params.py       --param values, image sizes and method names are checked first
* test_model_files.py  folders, empty, truncated, random, crafted and other tools' files
                       given as a model: named, explained, never executed
* test_progress.py     no carriage returns in logs; errors never land on a bar's line
* test_usage.py        options a command does not take are refused under its own usage;
                       README and --help list exactly each command's options
* test_interrupt.py    Ctrl-C during feature extraction, training or saving leaves nothing
                       behind, and a re-run gives the same result
* test_determinism.py  the same seed gives byte-identical scores
"""
