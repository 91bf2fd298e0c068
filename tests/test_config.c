/* Configs: the shipped files load with the seeds' settings, bad keys and values give their exact
 * one-line message, and the resolved config round-trips through its JSON form. */
#include <string.h>

#include "../train/config.h"
#include "testutil.h"

static mr_status parse(const char *json, mr_config *c) {
    mr_config_defaults(c);
    return mr_config_parse(json, "test.json", c);
}

static void expect_error(const char *json, const char *needle) {
    mr_config c;
    cr_assert_eq(parse(json, &c), MR_ERR_CONFIG, "accepted: %s", json);
    cr_assert(strstr(mr_last_error(), needle), "message '%s' lacks '%s'", mr_last_error(), needle);
    cr_assert(strstr(mr_last_error(), "test.json"), "message names the file: %s", mr_last_error());
}

Test(config, busi_is_the_first_seed) {
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load("configs/busi.json", &c), MR_OK, "%s", mr_last_error());
    cr_assert_str_eq(c.net.backbone_name, "resnet101");
    cr_assert_eq(c.net.num_classes, 3);
    cr_assert_str_eq(c.class_names[2], "malignant");
    cr_assert_eq(c.net.detection_nms, MR_NMS_CLASS_AGNOSTIC, "one diagnosis per lesion");
    cr_assert_float_eq(c.net.detection_min_confidence, 0.9f, 1e-7f);
    cr_assert_eq(c.epochs, 30);
    cr_assert_eq(c.steps_per_epoch, 51);
    cr_assert_eq(c.n_stages, 3);
    cr_assert_str_eq(mr_config_stage(&c, 0)->layers, "heads");
    cr_assert_str_eq(mr_config_stage(&c, 10)->layers, "4+");
    cr_assert_str_eq(mr_config_stage(&c, 29)->layers, "all");
    cr_assert_float_eq(mr_config_stage(&c, 29)->learning_rate, 0.0001f, 1e-9f);
    cr_assert_float_eq(c.net.weight_decay, 1e-4f, 1e-10f);
    cr_assert_float_eq(c.gradient_clip_norm, 5.0f, 0.0f);
    cr_assert_eq(c.net.image_max_dim, 512);
}

Test(config, mammo_and_tiny_load) {
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load("configs/mammo.json", &c), MR_OK, "%s", mr_last_error());
    cr_assert_eq(c.net.image_channels, 1);
    cr_assert_eq(c.net.n_anchor_scales, 5);
    cr_assert_eq(c.net.detection_nms, MR_NMS_CLASS_AGNOSTIC, "one diagnosis per lesion");
    cr_assert(!c.net.anchor_scales_per_level);
    cr_assert_eq(c.net.fc_size, 4096);
    cr_assert_eq(c.net.mask_shape, 14);
    cr_assert_float_eq(c.net.mean_pixel[0], 114.8f, 1e-4f);
    cr_assert_eq(c.n_mean_pixel, 1, "one mean for one channel, not widened to three");
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load("configs/tiny.json", &c), MR_OK, "%s", mr_last_error());
}

/* scratch.json is the configuration `make quality` measures at 256 px: tiny.json's network and
 * recipe at that size. If one changes, the other (and configs/README's figures) must too. */
/* config.json shows floats as people write them: 0.1, not 0.10000000149011612. */
Test(config, floats_are_written_as_given) {
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load("configs/busi.json", &c), MR_OK, "%s", mr_last_error());
    char *text = mr_config_to_json(&c);
    cr_assert_not_null(text);
    cr_assert_null(strstr(text, ".0000000"), "long float tails: %s", text);
    cr_assert_null(strstr(text, "99999"), "long float tails: %s", text);
    cr_assert_not_null(strstr(text, "\"RPN_NMS_THRESHOLD\":\t0.7"), "%s", text);
    free(text);
}

Test(config, scratch_is_tiny_at_256_px) {
    mr_config tiny, scratch;
    mr_config_defaults(&tiny);
    mr_config_defaults(&scratch);
    cr_assert_eq(mr_config_load("configs/tiny.json", &tiny), MR_OK, "%s", mr_last_error());
    cr_assert_eq(mr_config_load("configs/scratch.json", &scratch), MR_OK, "%s", mr_last_error());
    cr_assert_eq(scratch.net.image_max_dim, 256);
    tiny.net.image_min_dim = tiny.net.image_max_dim = 256;
    tiny.seed = scratch.seed;
    memcpy(tiny.name, scratch.name, sizeof tiny.name);
    memcpy(tiny.description, scratch.description, sizeof tiny.description);
    memcpy(tiny.train_data, scratch.train_data, sizeof tiny.train_data);
    memcpy(tiny.val_data, scratch.val_data, sizeof tiny.val_data);
    cr_assert_eq(mr_config_hash(&tiny), mr_config_hash(&scratch),
                 "scratch.json differs from tiny.json beyond its size, name and seed");
}

Test(config, unknown_key_suggests_the_closest) {
    expect_error(
        "{\"DETECTION_MIN_CONFIDENSE\": 0.5}",
        "unknown key \"DETECTION_MIN_CONFIDENSE\"; did you mean \"DETECTION_MIN_CONFIDENCE\"?");
    expect_error("{\"learning_rate\": 0.5}", "did you mean \"LEARNING_RATE\"?");
}

Test(config, wrong_types_and_ranges) {
    expect_error("{\"NUM_CLASSES\": \"three\"}", "NUM_CLASSES must be a number");
    expect_error("{\"NUM_CLASSES\": 2.5}", "NUM_CLASSES must be a whole number");
    expect_error("{\"DETECTION_MIN_CONFIDENCE\": 1.5}",
                 "DETECTION_MIN_CONFIDENCE is 1.5, outside the allowed range [0, 1]");
    expect_error("{\"IMAGE_MAX_DIM\": 500}", "IMAGE_MAX_DIM 500 must be a multiple of 64");
    expect_error("{\"BACKBONE\": \"resnet18\"}", "BACKBONE must be resnet50 or resnet101");
    expect_error("{\"USE_MINI_MASK\": 1}", "USE_MINI_MASK must be true or false");
    expect_error("{\"RPN_ANCHOR_RATIOS\": [0.5, \"x\"]}", "RPN_ANCHOR_RATIOS[1] must be a number");
    expect_error("{\"RPN_ANCHOR_SCALES\": [8, 16]}", "with one scale per FPN level it needs 5");
    expect_error("{\"NUM_CLASSES\": 4, \"CLASS_NAMES\": [\"BG\", \"a\"]}",
                 "NUM_CLASSES is 4 but CLASS_NAMES lists 2 names");
    expect_error("{\"CLASS_NAMES\": [\"lesion\", \"BG\"]}", "must start with \"BG\"");
    expect_error("{\"STAGES\": [{\"LAYERS\": \"heads\", \"UNTIL_EPOCH\": 5}, {\"LAYERS\": \"all\", "
                 "\"UNTIL_EPOCH\": 3}]}",
                 "STAGES[1].UNTIL_EPOCH 3 must be after the previous stage's 5");
    expect_error("{\"STAGES\": [{\"LAYER\": \"heads\", \"UNTIL_EPOCH\": 5}]}",
                 "STAGES[0] has unknown key \"LAYER\"");
    expect_error("{\"EPOCHS\": 40, \"STAGES\": [{\"LAYERS\": \"heads\", \"UNTIL_EPOCH\": 30}]}",
                 "the last stage ends at epoch 30 but EPOCHS is 40");
    expect_error("[1, 2]", "a config is a JSON object");
}

Test(config, syntax_errors_give_line_and_column) {
    expect_error("{\n  \"NAME\": \"x\",\n  \"EPOCHS\": ,\n}", "test.json:3:");
}

Test(config, resolved_json_round_trips) {
    mr_config a, b;
    mr_config_defaults(&a);
    cr_assert_eq(mr_config_load("configs/busi.json", &a), MR_OK);
    char *text = mr_config_to_json(&a);
    cr_assert_not_null(text);
    mr_config_defaults(&b);
    cr_assert_eq(mr_config_parse(text, "resolved", &b), MR_OK, "%s", mr_last_error());
    cr_assert_eq(mr_config_hash(&a), mr_config_hash(&b));
    cr_assert_eq(b.n_stages, 3);
    cr_assert_str_eq(b.train_data, a.train_data);
    free(text);
    mr_config_defaults(&b);
    cr_assert_neq(mr_config_hash(&a), mr_config_hash(&b), "different configs, different hashes");
}

/* Values at their documented minimum are stored as the nearest float, which can lie just below
 * it; the resolved config must still read back (a run must resume, predict and export). */
Test(config, values_at_their_minimum_round_trip) {
    mr_config a, b;
    const char *json = "{\"LEARNING_RATE\": 1e-9, \"BN_EPSILON\": 1e-12, "
                       "\"RPN_BBOX_STD_DEV\": [1e-6, 1e-6, 1e-6, 1e-6], "
                       "\"BBOX_STD_DEV\": [1e-6, 1e-6, 1e-6, 1e-6], "
                       "\"RPN_ANCHOR_RATIOS\": [0.01, 1, 2], \"ROI_POSITIVE_RATIO\": 0.001}";
    cr_assert_eq(parse(json, &a), MR_OK, "%s", mr_last_error());
    cr_assert_lt((double)a.learning_rate, 1e-9, "the float of 1e-9 lies below it: the case tested");
    char *text = mr_config_to_json(&a);
    cr_assert_not_null(text);
    cr_assert_eq(parse(text, &b), MR_OK, "%s", mr_last_error());
    cr_assert_eq(mr_config_hash(&a), mr_config_hash(&b));
    cr_assert_eq(b.learning_rate, a.learning_rate);
    cr_assert_eq(b.net.bn_eps, a.net.bn_eps);
    cr_assert_not_null(strstr(text, "\"LEARNING_RATE\":\t1e-09"), "written as given: %.300s",
                       strstr(text, "LEARNING_RATE"));
    free(text);
    /* Below the minimum is still refused. */
    expect_error("{\"LEARNING_RATE\": 9e-10}", "outside the allowed range");
    expect_error("{\"BN_EPSILON\": 5e-13}", "outside the allowed range");
}

/* ---- recipe keys: Matterport's behaviour by default, the from-scratch choices when asked ---- */

Test(config, recipe_keys_default_to_matterport) {
    mr_config c;
    cr_assert_eq(parse("{}", &c), MR_OK, "%s", mr_last_error());
    cr_assert_eq(c.net.image_normalization, MR_NORM_MEAN);
    cr_assert_null(mr_net_pixel_std(&c.net), "mean subtraction only");
    cr_assert_eq(c.net.roi_sampling, MR_ROI_SAMPLING_PROPORTIONAL);
    cr_assert(!c.net.proposals_include_gt);
    cr_assert_eq(c.net.detection_nms, MR_NMS_PER_CLASS);
    cr_assert_eq(c.weight_init, MR_INIT_GLOROT);
    cr_assert_eq(c.warmup_steps, 0);
    cr_assert(mr_augment_enabled(&c.augment));
}

Test(config, recipe_keys_parse_and_round_trip) {
    mr_config c;
    cr_assert_eq(parse("{\"IMAGE_CHANNEL_COUNT\": 1, \"MEAN_PIXEL\": [90], \"PIXEL_STD\": [40],"
                       " \"IMAGE_NORMALIZATION\": \"mean_std\", \"ROI_SAMPLING\": \"fill\","
                       " \"PROPOSALS_INCLUDE_GT\": true, \"WEIGHT_INIT\": \"kaiming\","
                       " \"WARMUP_STEPS\": 100, \"AUGMENT\": {\"FLIP\": 0.5}}",
                       &c),
                 MR_OK, "%s", mr_last_error());
    cr_assert_eq(c.net.image_normalization, MR_NORM_MEAN_STD);
    cr_assert_float_eq(mr_net_pixel_std(&c.net)[0], 40.0f, 0.0f);
    cr_assert_eq(c.net.roi_sampling, MR_ROI_SAMPLING_FILL);
    cr_assert(c.net.proposals_include_gt);
    cr_assert_eq(c.weight_init, MR_INIT_KAIMING);
    cr_assert_eq(c.warmup_steps, 100);
    /* An AUGMENT object names the ops to use; the others are off. */
    cr_assert_float_eq(c.augment.flip_prob, 0.5f, 0.0f);
    cr_assert_float_eq(c.augment.brightness, 0.0f, 0.0f);
    cr_assert_float_eq(c.augment.scale_min, 1.0f, 0.0f);
    char *json = mr_config_to_json(&c);
    mr_config d;
    cr_assert_eq(parse(json, &d), MR_OK, "%s\n%s", mr_last_error(), json);
    cr_assert(strstr(json, "\"mean_std\"") && strstr(json, "\"kaiming\""), "%s", json);
    cr_assert(strstr(json, "\"MEAN_PIXEL\":\t[90]"), "one mean per channel: %s", json);
    cr_assert_eq(mr_config_hash(&c), mr_config_hash(&d));
    free(json);
}

Test(config, one_channel_gets_one_pixel_std_by_default) {
    mr_config c;
    cr_assert_eq(parse("{\"IMAGE_CHANNEL_COUNT\": 1, \"MEAN_PIXEL\": [90]}", &c), MR_OK, "%s",
                 mr_last_error());
    cr_assert_eq(c.n_pixel_std, 1);
    cr_assert_float_eq(c.net.pixel_std[0], (58.395f + 57.12f + 57.375f) / 3.0f, 1e-4f);
}

Test(config, recipe_keys_reject_bad_values) {
    expect_error("{\"IMAGE_NORMALIZATION\": \"std\"}",
                 "IMAGE_NORMALIZATION must be \"mean\" or \"mean_std\"");
    expect_error("{\"ROI_SAMPLING\": 1}", "ROI_SAMPLING must be \"proportional\" or \"fill\"");
    expect_error("{\"WEIGHT_INIT\": \"he\"}", "WEIGHT_INIT must be \"glorot\" or \"kaiming\"");
    expect_error("{\"AUGMENT\": {\"FLIPS\": 0.5}}", "AUGMENT has unknown key \"FLIPS\"");
    expect_error("{\"AUGMENT\": {\"SCALE\": [1.2, 0.8]}}", "min <= max");
    expect_error("{\"AUGMENT\": 1}", "AUGMENT must be true, false or an object");
    expect_error("{\"WARMUP_STEPS\": -1}", "WARMUP_STEPS is -1, outside");
    expect_error("{\"PIXEL_STD\": [0, 1, 1]}", "PIXEL_STD[0] is 0, outside");
}

Test(config, mean_pixel_needs_one_value_per_channel) {
    expect_error("{\"IMAGE_CHANNEL_COUNT\": 1}",
                 "MEAN_PIXEL has 3 values but IMAGE_CHANNEL_COUNT is 1");
    expect_error("{\"MEAN_PIXEL\": [100]}", "MEAN_PIXEL has 1 value but IMAGE_CHANNEL_COUNT is 3");
    expect_error("{\"IMAGE_CHANNEL_COUNT\": 1, \"MEAN_PIXEL\": [90], \"PIXEL_STD\": [50, 50]}",
                 "PIXEL_STD has 2 values but IMAGE_CHANNEL_COUNT is 1");
}
