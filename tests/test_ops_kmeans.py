"""ops.kmeans: soft spherical K-means and the cluster bank with the fixed member selection (Q5)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from posebh_hf.ops import closest_keypoints, cluster_prototypes, soft_spherical_kmeans

C, M, D = 4, 3, 16


@pytest.fixture(autouse=True)
def _one_thread():
    # 500 tiny iterations: thread hand-offs dominate on a busy 2-core machine (40x slower with 2 threads)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _bank() -> torch.Tensor:
    """12 keypoints x 3 prototypes around C = 4 orthogonal directions u_c.

    Keypoint c (c < 4) is noisy around u_c (its three slots pushed along distinct orthogonal directions);
    keypoint 4 + c sits almost exactly on u_c; keypoint 8 + c is noisy again. The centre of cluster c is ~u_c,
    so its nearest members are keypoint 4 + c's prototypes.
    """
    eye = torch.eye(D)
    g = torch.Generator().manual_seed(0)
    protos = torch.empty(12, M, D)
    for c in range(C):
        for m in range(M):
            push = eye[4 + 3 * c + m] if 4 + 3 * c + m < D else -eye[4 + m]
            protos[c, m] = eye[c] + 0.7 * push
            protos[4 + c, m] = eye[c] + 1e-3 * torch.randn(D, generator=g)
            protos[8 + c, m] = eye[c] - 0.7 * push
    return F.normalize(protos, dim=-1)


def test_soft_kmeans_recovers_separated_directions():
    protos = _bank().reshape(-1, D)
    result = soft_spherical_kmeans(protos, protos[torch.arange(C) * M])
    cos = F.normalize(result.centers, dim=1) @ torch.eye(D)[:C].T
    torch.testing.assert_close(cos.diag(), torch.ones(C), atol=1e-3, rtol=0)
    assert result.assignment.shape == (36, C) and result.distance.shape == (36, C)
    torch.testing.assert_close(result.assignment.sum(dim=1), torch.ones(36))


def test_members_are_the_prototypes_nearest_to_each_centre_q5():
    protos = _bank()
    bank = cluster_prototypes(protos, C)
    assert bank.prototypes.shape == (C, M, D) and bank.members.shape == (C, M)
    # fixed: cluster c (initialised at keypoint c) holds keypoint 4 + c's three prototypes
    assert bank.closest_keypoint.tolist() == [4, 5, 6, 7]
    assert sorted((bank.members // M).flatten().tolist()) == sorted([4, 5, 6, 7] * M)
    torch.testing.assert_close(bank.prototypes, protos.reshape(-1, D)[bank.members])
    # released selection (argsort along the cluster axis, cluster ids used as rows) gives rows 0..C-1 instead
    flat = protos.reshape(-1, D)
    dist = (1 - F.normalize(flat, dim=1) @ F.normalize(bank.centers, dim=1).T) / 2
    released = torch.argsort(dist, dim=1)[:M, :].T
    assert int(released.max()) < C and (released[:, 0] // M).tolist() != bank.closest_keypoint.tolist()


def test_closest_keypoints_recovered_from_a_stored_bank():
    protos = _bank()
    bank = cluster_prototypes(protos, C)
    assert torch.equal(closest_keypoints(bank.prototypes, protos), bank.closest_keypoint)


def test_num_clusters_is_validated():
    with pytest.raises(ValueError, match="num_clusters must be in"):
        cluster_prototypes(_bank(), 13)
