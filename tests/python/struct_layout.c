/* Prints the size of each tessera.h struct that python/tessera mirrors with ctypes,
 * and the offset of its last field, as "name size offset" lines:
 * tests/python/test_binding.py compares them with the binding's. */
#include <tessera.h>

#include <stddef.h>
#include <stdio.h>

#define SHOW(type, last) printf("%s %zu %zu\n", #type, sizeof(type), offsetof(type, last))

int main(void) {
    SHOW(ts_shape, dims);
    SHOW(ts_dataset, class_names);
    SHOW(ts_preprocess, flip);
    SHOW(ts_optim_config, eps);
    SHOW(ts_train_config, compress_eb);
    SHOW(ts_epoch_report, act_kept_plain_bytes);
    SHOW(ts_train_hooks, user);
    SHOW(ts_eval_report, exit_top1);
    SHOW(ts_decompose_config, ga_generation_user);
    SHOW(ts_compose_config, max_macs);
    SHOW(ts_module_info, fitness);
    return 0;
}
