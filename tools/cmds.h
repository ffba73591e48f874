/* The verbs of the `gantry` command. Each returns the process exit code:
 * 0 success, 1 failure (the sentence already printed), 2 bad usage. */
#ifndef GT_CMDS_H
#define GT_CMDS_H

int gt_cmd_run(int argc, char **argv);
int gt_cmd_synth(int argc, char **argv);
int gt_cmd_inspect(int argc, char **argv);
int gt_cmd_bench(int argc, char **argv);
int gt_cmd_tokenize(int argc, char **argv);
int gt_cmd_perplexity(int argc, char **argv);
int gt_cmd_eval(int argc, char **argv);
int gt_cmd_plan(int argc, char **argv);
int gt_cmd_serve(int argc, char **argv);
int gt_cmd_generate(int argc, char **argv);
int gt_cmd_chat(int argc, char **argv);
int gt_cmd_bench_serve(int argc, char **argv);
int gt_cmd_quantize(int argc, char **argv);
int gt_cmd_imatrix(int argc, char **argv);

#endif
