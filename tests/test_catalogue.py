"""Every option of the trick group and of every family group has a mechanism test and a docs row."""
import importlib
import re
import subprocess
import sys

import pytest
from conftest import ROOT

FAMILIES = ("loss", "optim", "model", "norm_g", "norm_d", "latent", "init", "activation", "downsample",
            "upsample", "separate_batches", "normalize_inputs", "dataset_cache", "interpolation")
NORM_TESTS = ["test_families.test_norm_options_put_their_layer_in_the_chosen_net"]

# option -> the tests that prove its mechanism (TRICKS.md, "proof" column)
PROOFS = {
    "trick/acgan": ["test_tricks_structure.test_acgan_d_classifies_real_and_fake_and_g_is_pushed_to_its_class",
                    "test_tricks_structure.test_acgan_training_step_uses_the_aux_head_in_both_updates",
                    "test_tricks_structure.test_acgan_generator_is_class_conditional",
                    "test_tricks_structure.test_acgan_with_virtual_batch_norm_at_batch_32_classifies_through_the_reference_batch"],
    "trick/capacity": ["test_families.test_capacity_multipliers_scale_parameter_counts",
                       "test_tricks_structure.test_presets_set_the_core_values_from_their_parameters"],
    "trick/checkpoint_swap": ["test_tricks_structure.test_checkpoint_swap_trains_an_old_d_then_restores_the_current_one",
                              "test_tricks_structure.test_checkpoint_swap_first_swap_is_where_the_schedule_puts_it_and_a_run_too_short_for_it_is_refused"],
    "trick/conditional": ["test_tricks_structure.test_conditional_generator_follows_the_asked_class",
                          "test_tricks_structure.test_conditional_images_carry_label_channels_into_d"],
    "trick/consistency": ["test_augment.test_consistency_is_the_closed_form_on_a_non_linear_d_and_trains_both_of_ds_outputs",
                          "test_augment.test_consistency_is_zero_for_a_d_invariant_to_t_and_positive_otherwise",
                          "test_augment.test_consistency_reaches_ds_loss_with_each_lambda_on_its_own_batch_and_leaves_gs_loss_alone",
                          "test_augment.test_augmenting_tricks_refuse_2d_data_and_take_images"],
    "trick/d_dropout": ["test_families.test_dropout_in_g_stays_on_when_sampling",
                        "test_tricks_structure.test_presets_set_the_core_values_from_their_parameters",
                        "test_penalties.test_dropout_presets_put_dropout_of_their_p_in_their_net_only"],
    "trick/diffaugment": ["test_augment.test_each_diffaugment_op_is_the_references_formula_with_one_draw_per_sample_and_passes_gradients",
                          "test_augment.test_every_op_draws_for_each_sample_of_the_batch",
                          "test_augment.test_diffaugment_applies_its_policys_ops_in_order_with_its_ratios",
                          "test_augment.test_training_step_augments_real_and_fake_in_ds_update_and_fake_in_gs_update",
                          "test_augment.test_augmenting_tricks_refuse_2d_data_and_take_images"],
    "trick/ema": ["test_module.test_ema_equals_the_closed_form_average_pegged_to_g_before_start",
                  "test_module.test_ema_warmup_decay_is_min_of_decay_and_1_plus_n_over_10_plus_n",
                  "test_module.test_ema_after_a_short_ring_run_follows_the_trained_g_not_the_initial_one",
                  "test_module.test_ema_standing_statistics_are_the_mean_batch_statistics_of_its_own_samples",
                  "test_tricks_structure.test_presets_set_the_core_values_from_their_parameters"],
    "trick/experience_replay": ["test_tricks.test_replay_buffers_feed_the_stated_fraction_of_old_fakes"],
    "trick/feature_matching": ["test_tricks_structure.test_feature_matching_is_zero_when_batches_are_equal"],
    "trick/g_dropout": ["test_families.test_dropout_in_g_stays_on_when_sampling",
                        "test_penalties.test_dropout_presets_put_dropout_of_their_p_in_their_net_only"],
    "trick/g_history": ["test_tricks.test_replay_buffers_feed_the_stated_fraction_of_old_fakes",
                        "test_tricks.test_g_history_replaces_half_a_batch_of_its_full_buffer_per_d_update"],
    "trick/g_steps": ["test_module.test_n_critic_and_g_steps_count_optimizer_steps",
                      "test_tricks_structure.test_presets_set_the_core_values_from_their_parameters"],
    "trick/grad_clip": ["test_tricks.test_grad_clip_bounds_the_post_clip_norm_in_training",
                        "test_penalties.test_grad_clip_clips_each_nets_stepped_gradient_to_its_own_max_norm"],
    "trick/gradient_penalty": ["test_tricks.test_gradient_penalty_trick_is_zero_for_a_unit_norm_linear_critic",
                               "test_penalties.test_gradient_penalty_is_taken_at_per_sample_interpolates_of_real_and_fake",
                               "test_penalties.test_unit_gradient_penalty_is_the_batch_mean_of_the_squared_l2_norm_deviation",
                               "test_penalties.test_unit_gradient_penalty_gradient_reaches_the_critics_parameters",
                               "test_penalties.test_penalty_options_add_weight_times_the_penalty_to_ds_loss_in_ds_update"],
    "trick/historical_averaging": ["test_tricks.test_historical_averaging_penalty_is_zero_at_the_running_mean",
                                   "test_penalties.test_historical_averaging_adds_each_nets_distance_to_its_own_past_mean_to_its_loss"],
    "trick/instance_noise": ["test_tricks.test_instance_noise_std_follows_the_linear_schedule",
                             "test_tricks.test_instance_noise_added_to_d_inputs_has_the_scheduled_std"],
    "trick/lecam": ["test_r1_r2_lecam.test_lecam_term_equals_the_closed_form_against_anchors_updated_by_this_updates_outputs_first",
                    "test_r1_r2_lecam.test_lecam_anchors_follow_the_current_means_before_start_and_the_ema_from_it_and_act_after_it",
                    "test_r1_r2_lecam.test_lecam_reaches_ds_loss_in_training_step_and_not_gs",
                    "test_r1_r2_lecam.test_lecam_resumes_with_its_anchors"],
    "trick/label_smoothing": ["test_tricks.test_label_smoothing_targets_lie_in_their_ranges_and_fill_them",
                              "test_tricks.test_label_smoothing_targets_reach_the_d_loss"],
    "trick/large_batch": ["test_tricks_structure.test_presets_set_the_core_values_from_their_parameters"],
    "trick/layer_noise": ["test_families.test_layer_noise_only_in_training"],
    "trick/loss_balancing": ["test_tricks_structure.test_loss_balancing_adds_updates_only_over_the_threshold"],
    "trick/minibatch_discrimination": ["test_tricks_structure.test_minibatch_features_peak_for_identical_samples_and_shape",
                                       "test_tricks_structure.test_minibatch_features_leave_out_each_samples_own_distance_and_add_the_bias"],
    "trick/multi_generator": ["test_tricks_structure.test_multi_generator_gives_every_generator_gradient",
                              "test_tricks_structure.test_multi_generator_extra_generators_follow_model_init_from_the_runs_seed"],
    "trick/n_critic": ["test_tricks_structure.test_n_critic_and_ttur_presets_reach_the_optimisers"],
    "trick/noisy_labels": ["test_tricks.test_noisy_labels_flip_at_rate_p"],
    "trick/pac": ["test_packing.test_pack_i_joins_sample_i_of_each_of_the_m_chunks_in_chunk_order",
                  "test_packing.test_d_is_rebuilt_for_inputs_m_times_as_wide_and_judges_one_pack_per_output",
                  "test_packing.test_training_step_feeds_d_packs_of_m_real_or_m_fake_samples_in_both_updates",
                  "test_packing.test_gs_gradient_reaches_every_sample_of_every_pack_in_gs_update",
                  "test_packing.test_a_bad_m_and_a_per_sample_trick_are_refused_before_training_on_one_line"],
    "trick/one_sided_label_smoothing": ["test_tricks.test_one_sided_label_smoothing_sets_real_targets_only"],
    "trick/orthogonal_reg": ["test_tricks.test_orthogonal_reg_is_zero_for_orthogonal_weights_only",
                             "test_tricks.test_orthogonal_reg_adds_biggans_ortho_gradient_to_g_before_its_step",
                             "test_tricks.test_orthogonal_reg_d_beta_adds_the_same_gradient_to_d",
                             "test_penalties.test_orthogonal_reg_adds_the_ortho_gradient_of_its_own_strength_to_each_net_through_training_step"],
    **{f"trick/{name}": ["test_r1_r2_lecam.test_zero_centred_penalty_is_the_mean_over_samples_of_the_squared_input_gradient",
                         "test_r1_r2_lecam.test_r1_is_taken_at_the_real_batch_and_r2_at_the_fake_batch_with_gamma_over_2",
                         "test_r1_r2_lecam.test_the_penalty_gradient_reaches_ds_parameters_as_plain_autograd_gives_it",
                         "test_r1_r2_lecam.test_the_penalty_reaches_ds_loss_every_interval_d_updates_scaled_by_the_interval",
                         "test_r1_r2_lecam.test_resume_continues_the_d_update_count"] for name in ("r1", "r2")},
    "trick/skip_z": ["test_families.test_skip_z_feeds_a_chunk_of_z_to_every_block"],
    "trick/spectral_norm": ["test_tricks.test_spectral_norm_keeps_largest_singular_value_near_one_after_training",
                            "test_penalties.test_spectral_norm_normalises_the_nets_its_parameters_name_and_only_those"],
    "trick/truncation": ["test_tricks_structure.test_truncation_leaves_no_component_beyond_the_threshold",
                         "test_tricks_structure.test_truncation_resamples_from_the_runs_prior"],
    "trick/ttur": ["test_tricks_structure.test_n_critic_and_ttur_presets_reach_the_optimisers"],
    "trick/vae_gan": ["test_tricks_structure.test_vae_gan_kl_term_has_its_closed_form",
                      "test_tricks_structure.test_vae_gan_reconstruction_is_measured_in_ds_features_by_default"],
    "trick/wgan_gp": ["test_tricks_structure.test_presets_set_the_core_values_from_their_parameters",
                      "test_losses.test_wgan_recipes_train_with_their_papers_optimisers",
                      "test_losses.test_gradient_penalty_zero_for_unit_norm_linear_critic",
                      "test_penalties.test_gradient_penalty_is_taken_at_per_sample_interpolates_of_real_and_fake",
                      "test_penalties.test_penalty_options_add_weight_times_the_penalty_to_ds_loss_in_ds_update"],
    **{f"loss/{name}": ["test_losses.test_loss_matches_closed_form"] for name in
       ("non_saturating", "minimax", "wgan", "wgan_gp", "hinge", "lsgan", "relativistic", "dragan", "ebgan", "began")},
    "loss/wgan_gp#penalty": ["test_penalties.test_gradient_penalty_is_taken_at_per_sample_interpolates_of_real_and_fake",
                             "test_penalties.test_unit_gradient_penalty_is_the_batch_mean_of_the_squared_l2_norm_deviation",
                             "test_penalties.test_unit_gradient_penalty_gradient_reaches_the_critics_parameters",
                             "test_penalties.test_penalty_options_add_weight_times_the_penalty_to_ds_loss_in_ds_update"],
    "loss/wgan#clip": ["test_losses.test_wgan_clips_critic_weights_after_every_d_step"],
    "loss/dragan#penalty": ["test_losses.test_dragan_penalty_is_zero_when_the_gradient_norm_is_one_around_the_data",
                            "test_penalties.test_dragan_penalty_is_taken_between_the_data_and_its_perturbation_by_half_the_batch_std",
                            "test_penalties.test_unit_gradient_penalty_is_the_batch_mean_of_the_squared_l2_norm_deviation",
                            "test_penalties.test_unit_gradient_penalty_gradient_reaches_the_critics_parameters",
                            "test_penalties.test_penalty_options_add_weight_times_the_penalty_to_ds_loss_in_ds_update"],
    "loss/ebgan#pulling_away": ["test_losses.test_pulling_away_term_is_the_mean_squared_cosine_over_distinct_pairs",
                                "test_losses.test_ebgan_g_loss_adds_the_pulling_away_term_on_the_encoders_codes_of_the_fake_batch"],
    "loss/wgan#optimiser": ["test_losses.test_wgan_recipes_train_with_their_papers_optimisers",
                            "test_losses.test_an_optimiser_chosen_on_the_command_line_wins_over_the_wgan_recipe"],
    "loss/wgan_gp#optimiser": ["test_losses.test_wgan_recipes_train_with_their_papers_optimisers"],
    "loss/wgan_gp#batch_norm_refused": ["test_losses.test_wgan_gp_loss_refuses_a_batch_norm_critic_on_one_line"],
    "loss/began#k": ["test_losses.test_began_k_follows_the_equilibrium_rule_clipped_to_0_1"],
    "optim/adam": ["test_module.test_separate_optimizers_and_learning_rates"],
    "optim/sgd_d": ["test_tricks_structure.test_sgd_d_option"],
    "optim/wgan": ["test_losses.test_wgan_recipes_train_with_their_papers_optimisers"],
    "optim/wgan_gp": ["test_losses.test_wgan_recipes_train_with_their_papers_optimisers"],
    "model/mlp": ["test_config.test_image_data_selects_the_dcgan_unless_told_otherwise"],
    "model/dcgan": ["test_families.test_up_and_downsampling_options_keep_the_shapes"],
    "model/gan2014": ["test_families.test_maxout_outputs_the_max_over_pieces"],
    "model/sndcgan": ["test_experiments.test_sndcgan_nets_are_the_papers_layers"],
    **{f"{net}/{option}": NORM_TESTS for net in ("norm_g", "norm_d") for option in
       ("none", "batch_norm", "layer_norm", "instance_norm", "virtual_batch_norm", "reference_batch_norm")},
    "norm_d/batch_norm#momentum": ["test_families.test_batch_norm_momentum_is_applied"],
    "norm_d/instance_norm#per_sample": ["test_families.test_instance_norm_uses_per_sample_statistics"],
    "norm_d/virtual_batch_norm#independence": [
        "test_families.test_reference_batch_norms_make_outputs_independent_of_batch_mates",
        "test_families.test_virtual_batch_norm_joins_the_sample_with_the_reference"],
    "latent/gaussian_z": ["test_families.test_latent_distributions_have_their_moments"],
    "latent/uniform_z": ["test_families.test_latent_distributions_have_their_moments"],
    "init/default": ["test_module.test_same_seed_same_run_and_other_seed_differs"],
    "init/orthogonal_init": ["test_families.test_orthogonal_init_preserves_norms"],
    "init/dcgan_init": ["test_families.test_dcgan_init_moments"],
    "init/pacgan_init": ["test_pacgan_reference.test_pacgan_init_draws_weights_from_n_0_002_with_zero_biases_and_unit_norm_gains",
                         "test_pacgan_reference.test_the_default_init_is_not_the_authors"],
    "activation/leaky_relu": ["test_families.test_activation_option"],
    "activation/relu": ["test_families.test_activation_option"],
    **{f"downsample/{o}": ["test_families.test_up_and_downsampling_options_keep_the_shapes"]
       for o in ("strided", "avg_pool", "max_pool")},
    **{f"upsample/{o}": ["test_families.test_up_and_downsampling_options_keep_the_shapes"]
       for o in ("conv_transpose", "pixel_shuffle", "nearest")},
    "separate_batches/separate": ["test_families.test_separate_batches_and_mixed_batch_give_different_batch_statistics"],
    "separate_batches/mixed": ["test_families.test_separate_batches_and_mixed_batch_give_different_batch_statistics"],
    "normalize_inputs/tanh": ["test_families.test_normalize_inputs_ranges_match_the_generator_output"],
    "normalize_inputs/sigmoid": ["test_families.test_normalize_inputs_ranges_match_the_generator_output"],
    "dataset_cache/tensor": ["test_families.test_dataset_cache_off_draws_batches_through_a_dataloader",
                             "test_data.test_dataloader_yields_iteration_numbers_only"],
    "dataset_cache/dataloader": ["test_families.test_dataset_cache_off_draws_batches_through_a_dataloader"],
    "interpolation/slerp": ["test_families.test_slerp_stays_on_the_arc_and_lerp_cuts_through"],
    "interpolation/lerp": ["test_families.test_slerp_stays_on_the_arc_and_lerp_cuts_through"],
}


def options():
    return {f"{group}/{p.stem}" for group in ("trick", *FAMILIES) for p in (ROOT / "gan_ablate" / "conf" / group).glob("*.yaml")}


def test_every_option_has_a_mechanism_test():
    covered = {key.split("#")[0] for key in PROOFS}
    assert sorted(options() - covered) == [], "options without a test: add one and list it in PROOFS"
    assert sorted(covered - options()) == [], "PROOFS names options that no longer exist"


@pytest.mark.parametrize("key", sorted(PROOFS))
def test_the_listed_tests_exist(key):
    for ref in PROOFS[key]:
        module, name = ref.split(".")
        assert callable(getattr(importlib.import_module(module), name, None)), ref


def test_docs_list_exactly_the_options_that_exist():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_tricks_doc.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    doc = (ROOT / "docs" / "tricks.md").read_text()
    rows = set(re.findall(r"^\| `([a-z_0-9]+)` \| (?:`([a-z_0-9]+)` \|)?", doc, flags=re.M))
    documented = {f"trick/{a}" if not b else f"{a}/{b}" for a, b in rows}
    assert documented == options()


def test_every_catalogue_id_is_a_config_option():
    """The ids of ../shared/TRICKS.md, where the catalogue is beside the checkout."""
    catalogue = ROOT.parent / "shared" / "TRICKS.md"
    if not catalogue.exists():
        pytest.skip("TRICKS.md is not beside this checkout")
    ids = set()
    for line in catalogue.read_text().splitlines():
        if line.startswith("| `"):
            ids |= set(re.findall(r"`([a-z0-9_]+)`", line.split("|")[1]))
    ids -= {"grad_norms", "failure_watch", "fid", "is", "kid", "seeds", "sample_grids"}
    conf = ROOT / "gan_ablate" / "conf"
    names = {p.stem for p in conf.rglob("*.yaml")} | {p.name for p in conf.iterdir()}
    assert sorted(ids - names) == []
