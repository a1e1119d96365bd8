/* library.h - the block library on disk: what `legodnn extract` writes and
 * every later stage (retrain, profile, latency, scale, serve) reads.
 *
 * A library is a directory:
 *   manifest.json            format_version 1 (cJSON), described below
 *   frame.onnx               the model outside the blocks
 *   blocks/block-<i>-<s>.onnx  one standalone ONNX model per descendant,
 *                            s printed with the fewest decimals (at least 2)
 *                            that give every sparsity back exactly, the same
 *                            count for all: block-3-0.30.onnx, block-0-0.125.onnx;
 *                            a descendant rewritten by a later stage (retrain)
 *                            is block-<i>-<s>.r<n>.onnx (see
 *                            library_replace_descendant): read names from the
 *                            manifest, never build them
 *
 * frame.onnx holds every node outside the blocks. Its inputs are the
 * model's inputs, then each block's exit value (in block order); its
 * outputs are the model's outputs, then each block's entry value not
 * already among them. So it is an ordinary ONNX model any tool opens, and a
 * composition splices descendant i between entry i and exit i (compose.h).
 * Constants computed at load (folded Shape/Gather/Concat chains) stay as
 * their nodes where the frame has their inputs, else become Constant nodes.
 * The extra inputs have a dynamic batch dimension when a model input has
 * one.
 *
 * Each descendant file has one input, its block's entry value (same name,
 * dynamic batch dimension), and one output, the exit value; s = 0 holds the
 * teacher's block with its initializers byte for byte.
 *
 * manifest.json:
 *   format_version  1
 *   generator       "legodnn <version>"
 *   model           {file, sha256, bytes, params, param_bytes, flops,
 *                    inputs: [{name, shape}], outputs: [{name, shape}]}
 *   input_shape     the first model input's shape
 *   max_ratio       the block detector's ratio
 *   sparsities      ascending, starting with 0
 *   frame           {file, sha256, bytes, params, param_bytes, flops,
 *                    inputs, outputs: how many of its inputs and outputs are
 *                    the model's (the rest are block boundaries)}
 *   blocks[]        {index, name ("block-<i>"), entry, exit, input_shape,
 *                    output_shape, nodes, convs, prunable, kept (node names;
 *                    prunable and kept as the detector found them),
 *                    pruned_convs (the convs whose output channels the
 *                    channel analysis can thin), params, param_bytes, flops,
 *                    descendants[]}
 *   descendants[]   {sparsity, file, sha256, bytes (file size), weight_bytes,
 *                    params, flops, pruned: [{conv, channels, kept: [...]}]
 *                    (kept output channels of each thinned conv, teacher
 *                    indices), retraining_loss, accuracy_loss, latency
 *                    (null until the later stages fill them; latency is an
 *                    object keyed by device profile, runtime/latency.h, which
 *                    also adds a top-level "devices" object)}
 *   profile         written by `legodnn profile` (profile/profile.h): {task,
 *                    metric, dataset, test_samples, test_subset, max_test,
 *                    batch, teacher_accuracy, environments (the sparsity of
 *                    every block in each), compositions_evaluated, seconds,
 *                    compositions: [{choice, accuracy}], validation:
 *                    [{kind, choice, estimated, measured}],
 *                    validation_max_error, validation_mean_error}; choices
 *                    are one sparsity per block
 *
 * Writing is atomic at two levels: every file through a temporary and a
 * rename, and the whole library built in a sibling directory LIB.tmp.<pid>
 * that is renamed to LIB only when complete, so an interrupted or failed
 * extraction leaves no LIB (or the old one, untouched) and removes its
 * temporary directory (a killed process leaves LIB.tmp.<pid>, which the next
 * extraction into LIB removes). */
#ifndef LEGO_BLOCKS_LIBRARY_H
#define LEGO_BLOCKS_LIBRARY_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/file.h"
#include "detect.h"

#define LIBRARY_FORMAT_VERSION 1

typedef struct lib_cut {
    char *conv;          /* node name */
    int64_t channels;    /* the teacher's output channels */
    int64_t *kept, n_kept; /* kept output channels, ascending */
} lib_cut;

/* A file's identity (core/file.h) when its hash last matched the manifest:
 * a load that finds the same identity skips hashing it again. */
typedef struct lib_checked {
    file_id id;
    bool valid;
} lib_checked;

typedef struct lib_descendant {
    double sparsity;
    char *file;          /* relative to the library directory */
    char sha256[65];
    int64_t bytes, weight_bytes, params, flops;
    lib_cut *cuts;
    int n_cuts;
    lego_graph *g;       /* loaded on demand (library_descendant), else NULL */
    lib_checked checked; /* its file as its SHA-256 was last found to match */
} lib_descendant;

typedef struct lib_block {
    int index;
    char *entry, *exit;  /* value names */
    int in_rank, out_rank;
    int64_t in_shape[LEGO_MAX_RANK], out_shape[LEGO_MAX_RANK];
    char **nodes, **convs, **prunable, **kept, **pruned_convs;
    int n_nodes, n_convs, n_prunable, n_kept, n_pruned_convs;
    int64_t params, param_bytes, flops; /* the teacher's block */
    lib_descendant *desc; /* one per sparsity, in the library's order */
    int n_desc;
} lib_block;

typedef struct block_library {
    char *dir;
    int format_version;
    char *model_file;
    char model_sha256[65];
    int64_t model_bytes, model_params, model_param_bytes, model_flops;
    int input_rank;
    int64_t input_shape[LEGO_MAX_RANK];
    double max_ratio;
    double *sparsities;
    int n_sparsities;
    char *frame_file;
    char frame_sha256[65];
    int64_t frame_bytes, frame_params, frame_param_bytes, frame_flops;
    int frame_model_inputs, frame_model_outputs;
    lego_graph *frame;   /* loaded on demand (library_frame), else NULL */
    lib_checked frame_checked;
    int64_t files_hashed; /* SHA-256s computed of its files since opened */
    lib_block *blocks;
    int n_blocks;
    struct cJSON *manifest; /* the parsed manifest.json, for the stages' updates */
    /* library_replace_descendant's bookkeeping until library_save: the files
     * it wrote (removed by library_free if never saved) and the ones they
     * supersede (removed by library_save once the manifest names the new) */
    char **pending, **stale;
    int n_pending, n_stale;
} block_library;

/* Called after each file is written (done of total); return false to stop
 * the extraction, which then fails with "interrupted" and leaves nothing. */
typedef bool (*library_progress_fn)(void *ctx, int done, int total, const char *what);

typedef struct extract_options {
    const double *sparsities; /* ascending, unique, in [0, 1), first 0 */
    int n_sparsities;
    bool force;               /* replace an existing library at the path */
    library_progress_fn progress;
    void *ctx;
} extract_options;

/* Check a sparsity list as extract_options needs it; the error names the
 * offending value. */
lego_status library_check_sparsities(const double *s, int n);

/* Write the library of `model` (prepared by graph_infer) with the blocks
 * `bs` detected on it into directory `dir`. model_path is the file it was
 * read from (its name and SHA-256 go into the manifest), or NULL. When out is
 * not NULL it receives the library as library_open would read it. */
lego_status library_extract(const lego_graph *model, const block_set *bs, const char *model_path,
                            const char *dir, const extract_options *opt, block_library *out);

/* Read and validate a library: the manifest's version and fields, and
 * every listed file's size and SHA-256. Errors name the file. */
lego_status library_open(const char *dir, block_library *out);
void library_free(block_library *lib);

/* The frame, or descendant `d` of block `b`, read on first use, imported
 * and prepared at the library's shapes. Owned by lib. Its hash is checked
 * again unless the file's identity (file.h: inode, size and times) is the
 * one it had when its hash last matched, at library_open or an earlier
 * load: hashing was some 40% of reloading a block into the runtime. So a
 * file replaced or rewritten after opening is caught, except a rewrite of
 * the same size within the clock tick of the version checked. */
lego_status library_frame(block_library *lib, lego_graph **out);
lego_status library_descendant(block_library *lib, int b, int d, lego_graph **out);
/* Free descendant d of block b's graph if loaded (a stage done with it: its
 * weights are often the largest thing held); the next library_descendant
 * reads it again. Pointers library_descendant gave for it become invalid. */
void library_unload(block_library *lib, int b, int d);

/* Updates by the later stages (retrain, profile, latency). They change the
 * library in memory; library_save writes manifest.json (atomically), so a
 * stage interrupted before saving leaves the manifest it started from. */
/* Descendant d of block b's object in the manifest (to read or set fields). */
struct cJSON *library_descendant_json(block_library *lib, int b, int d);
/* obj[key] = value (null when value is not finite), replacing what was there. */
lego_status library_set_number(struct cJSON *obj, const char *key, double value);
/* Write g (a retrained descendant) as descendant d of block b. The file
 * goes under a new name (block-3-0.30.onnx -> block-3-0.30.r1.onnx -> .r2
 * ...), never over the old one, and the manifest in memory takes its name,
 * size and SHA-256; library_save then switches the manifest on disk in one
 * atomic rename and removes the superseded files. So a reader sees the old
 * manifest with the old files or the new with the new, never a manifest
 * whose hashes fail, whenever the writer stops. library_free without a save
 * removes the new files again. */
lego_status library_replace_descendant(block_library *lib, int b, int d, const lego_graph *g);
lego_status library_save(block_library *lib);

/* "blocks/block-<b>-<s>.onnx" for sparsity s with `decimals` decimals. */
void library_descendant_file(int b, double s, int decimals, char *buf, size_t len);
/* The decimals that name every sparsity of a list unambiguously. */
int library_sparsity_decimals(const double *s, int n);

#endif
