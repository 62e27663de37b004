using System.Security.Cryptography;
using MinBft.Crypto;

namespace MinBft.Tests.Crypto;

/// <summary>The Merkle tree that lets a replica sign a batch of replies once.</summary>
public sealed class ReplyTreeTests
{
    private static byte[][] Leaves(int count) =>
        Enumerable.Range(0, count).Select(i => SHA256.HashData(BitConverter.GetBytes(i))).ToArray();

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(8)]
    [InlineData(13)]
    [InlineData(64)]
    [InlineData(100)]
    public void Every_leaf_s_path_leads_to_the_root_and_only_from_its_own_position(int count)
    {
        var leaves = Leaves(count);
        var (root, paths) = ReplyTree.Build(leaves);
        Assert.Equal(count, paths.Length);
        for (var i = 0; i < count; i++)
        {
            Assert.Equal(root, ReplyTree.RootOf(leaves[i], i, count, paths[i]));
            Assert.True(paths[i].Length <= (int)Math.Ceiling(Math.Log2(count)));
            // Another leaf at this position, or this leaf at another, does not lead there.
            if (count > 1)
            {
                Assert.NotEqual(root, ReplyTree.RootOf(leaves[(i + 1) % count], i, count, paths[i]));
                var elsewhere = ReplyTree.RootOf(leaves[i], (i + 1) % count, count, paths[i]);
                Assert.True(elsewhere is null || !elsewhere.AsSpan().SequenceEqual(root));
            }
        }
    }

    [Fact]
    public void A_different_batch_size_gives_another_root_and_a_path_of_the_wrong_shape_gives_none()
    {
        var leaves = Leaves(6);
        var (root, paths) = ReplyTree.Build(leaves);
        var (five, _) = ReplyTree.Build(leaves[..5]);
        Assert.NotEqual(root, five);
        // Leaf 4 of 6 has a sibling; claimed as leaf 4 of 5 it has none, so its path is too long.
        Assert.Null(ReplyTree.RootOf(leaves[4], 4, 5, paths[4]));
        Assert.Null(ReplyTree.RootOf(leaves[0], 0, 6, paths[0][..^1]));
        Assert.Null(ReplyTree.RootOf(leaves[0], 0, 6, [.. paths[0], root]));
        Assert.Null(ReplyTree.RootOf(leaves[0], 6, 6, paths[0]));
        Assert.Null(ReplyTree.RootOf(leaves[0], -1, 6, paths[0]));
        Assert.Null(ReplyTree.RootOf(leaves[0], 0, 0, []));
        Assert.Null(ReplyTree.RootOf(leaves[0], 0, 6, [new byte[31], paths[0][1], paths[0][2]]));
    }

    [Fact]
    public void An_inner_node_never_passes_for_a_leaf()
    {
        // Inner nodes are hashed under their own tag: the pair (leaf0, leaf1) hashed as a leaf is
        // not the parent, so a two-leaf tree's root cannot be "proved" as a one-leaf tree.
        var leaves = Leaves(2);
        var (root, _) = ReplyTree.Build(leaves);
        Assert.NotEqual(root, SHA256.HashData([.. leaves[0], .. leaves[1]]));
        var (single, paths) = ReplyTree.Build([root]);
        Assert.Equal(root, single);
        Assert.Empty(paths[0]);
    }
}
