namespace MinBft.Silo;

/// <summary>Silo host entry point; the hosting issue fills this in.</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        Console.Error.WriteLine("MinBft.Silo: hosting is not implemented yet.");
        return 1;
    }
}
