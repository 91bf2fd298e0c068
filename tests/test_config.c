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
    cr_assert_eq(c.net.backbone_depth, 101);
    cr_assert_eq(c.net.num_classes, 3);
    cr_assert_str_eq(c.class_names[2], "malignant");
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
    cr_assert(!c.net.anchor_scales_per_level);
    cr_assert_eq(c.net.fc_size, 4096);
    cr_assert_eq(c.net.mask_shape, 14);
    cr_assert_float_eq(c.net.mean_pixel[2], 114.8f, 1e-4f);
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load("configs/tiny.json", &c), MR_OK, "%s", mr_last_error());
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
    expect_error("{\"BACKBONE\": \"resnet18\"}", "BACKBONE must be \"resnet50\" or \"resnet101\"");
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
