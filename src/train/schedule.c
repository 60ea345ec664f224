/* Learning-rate schedules, evaluated per optimizer step. */
#include "train.h"

#include <math.h>

static double cos_anneal(double start, double end, double pct) { return end + (start - end) / 2.0 * (cos(3.14159265358979323846 * pct) + 1.0); }

float ts_schedule_lr(const ts_schedule *s, int64_t step) {
    double lr = s->lr;
    int64_t spe = s->steps_per_epoch > 0 ? s->steps_per_epoch : 1;
    int64_t total = s->total_steps > 0 ? s->total_steps : 1;
    switch (s->kind) {
    case TS_SCHED_CONSTANT:
        break;
    case TS_SCHED_STEP: {
        /* as torch StepLR / MultiStepLR stepped once per epoch */
        int64_t epoch = step / spe, epochs = (total + spe - 1) / spe;
        double gamma = s->gamma > 0 ? s->gamma : 0.1;
        int decays = 0;
        if (s->step_size > 0) decays = (int)(epoch / s->step_size);
        else decays = (epoch >= epochs / 2 ? 1 : 0) + (epoch >= (epochs * 3) / 4 ? 1 : 0);
        lr = s->lr * pow(gamma, decays);
        break;
    }
    case TS_SCHED_COSINE:
        lr = cos_anneal(s->lr, 0.0, (double)(step < total ? step : total) / (double)total);
        break;
    case TS_SCHED_ONECYCLE: {
        /* torch OneCycleLR defaults: pct_start 0.3, div_factor 25, final_div_factor 1e4, cos */
        double initial = s->lr / 25.0, min_lr = initial / 1e4;
        double up_end = 0.3 * (double)total - 1.0, down_end = (double)total - 1.0;
        double t = (double)step;
        if (t <= up_end) lr = cos_anneal(initial, s->lr, up_end > 0 ? t / up_end : 1.0);
        else {
            double pct = (t - up_end) / (down_end - up_end);
            lr = cos_anneal(s->lr, min_lr, pct > 1.0 ? 1.0 : pct);
        }
        break;
    }
    }
    return (float)lr;
}
