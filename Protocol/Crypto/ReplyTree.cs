using System.Security.Cryptography;
using MinBft.Encoding;
using MinBft.Messages;

namespace MinBft.Crypto;

/// <summary>
/// The Merkle tree over one batch of REPLYs, so a replica signs a batch once instead of each
/// reply. Leaves are SHA-256 of <see cref="MessageEncoding.ReplyLeaf(Reply)"/>; an inner node is
/// SHA-256 over its own tag and its two children, so a leaf can never pass for an inner node (or
/// the reverse). A level with an odd number of nodes carries its last node up unchanged; the
/// shape is fixed by the leaf count, which the signed root covers.
/// </summary>
public static class ReplyTree
{
    /// <summary>The root of the tree over <paramref name="leaves"/> and each leaf's path of sibling hashes.</summary>
    public static (byte[] Root, byte[][][] Paths) Build(IReadOnlyList<byte[]> leaves)
    {
        ArgumentNullException.ThrowIfNull(leaves);
        if (leaves.Count == 0) throw new ArgumentException("a reply tree has at least one leaf", nameof(leaves));
        var depth = 0;
        for (var width = leaves.Count; width > 1; width = (width + 1) / 2) depth++;
        var paths = new List<byte[]>[leaves.Count];
        for (var i = 0; i < paths.Length; i++) paths[i] = new List<byte[]>(depth);
        // positions[i]: where leaf i's ancestor sits on the current level.
        var positions = Enumerable.Range(0, leaves.Count).ToArray();
        var level = leaves.ToArray();
        while (level.Length > 1)
        {
            var next = new byte[(level.Length + 1) / 2][];
            for (var j = 0; j < next.Length; j++)
                next[j] = 2 * j + 1 < level.Length ? Node(level[2 * j], level[2 * j + 1]) : level[2 * j];
            for (var i = 0; i < positions.Length; i++)
            {
                var sibling = positions[i] ^ 1;
                if (sibling < level.Length) paths[i].Add(level[sibling]);
                positions[i] /= 2;
            }
            level = next;
        }
        return (level[0], paths.Select(p => p.ToArray()).ToArray());
    }

    /// <summary>
    /// The root that <paramref name="leaf"/> at <paramref name="index"/> of <paramref name="count"/>
    /// leaves and <paramref name="path"/> lead to, or null when the path does not fit that shape.
    /// </summary>
    public static byte[]? RootOf(byte[] leaf, int index, int count, IReadOnlyList<byte[]> path) =>
        Walk(leaf, index, count, path) is { } walk ? walk.Last().Node : null;

    /// <summary>
    /// The nodes from <paramref name="leaf"/> (level 0, at <paramref name="index"/>) up to the root
    /// (the last one), each with its level and position on that level; hashed lazily, so a caller
    /// that stops early pays only for the nodes it looked at. Null when <paramref name="path"/>
    /// does not fit the shape of <paramref name="count"/> leaves (checked before anything is hashed).
    /// </summary>
    public static IEnumerable<(int Level, int Position, byte[] Node)>? Walk(byte[] leaf, int index, int count, IReadOnlyList<byte[]> path)
    {
        if (count < 1 || index < 0 || index >= count || path.Count != PathLength(index, count)) return null;
        foreach (var hash in path)
            if (hash is not { Length: MessageLimits.DigestLength }) return null;
        return Nodes(leaf, index, count, path);
    }

    private static IEnumerable<(int Level, int Position, byte[] Node)> Nodes(byte[] leaf, int index, int count, IReadOnlyList<byte[]> path)
    {
        var node = leaf;
        var used = 0;
        var level = 0;
        for (var width = count; width > 1; width = (width + 1) / 2, index /= 2, level++)
        {
            yield return (level, index, node);
            var sibling = index ^ 1;
            if (sibling >= width) continue; // the last node of an odd level moves up alone
            node = (index & 1) == 0 ? Node(node, path[used]) : Node(path[used], node);
            used++;
        }
        yield return (level, 0, node);
    }

    /// <summary>Siblings on the path of leaf <paramref name="index"/> of <paramref name="count"/>.</summary>
    private static int PathLength(int index, int count)
    {
        var length = 0;
        for (var width = count; width > 1; width = (width + 1) / 2, index /= 2)
            if ((index ^ 1) < width) length++;
        return length;
    }

    public static byte[] Leaf(Reply reply) => MessageEncoding.ReplyLeafDigest(reply);

    private static byte[] Node(byte[] left, byte[] right)
    {
        using var w = CanonicalWriter.Rent(96);
        return w.Tag(MessageTag.ReplyTreeNode).Raw(left).Raw(right).Sha256();
    }
}
